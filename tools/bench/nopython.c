/* What the guard costs a program that never loads Python (docs/performance.md, "Where
 * Python is absent"; driven by tools/bench/nopython.py):
 *
 *   nopython pingpong N   two threads hand a token back and forth N times through one
 *                         condition variable, each wait a pthread_cond_timedwait with a
 *                         far deadline (every such wait in the process goes through the
 *                         guard's hook: a return-address range check, then the real call)
 *   nopython pingpong-wait N   the same with plain pthread_cond_wait (hooked the same way)
 *   nopython join N       create and join N threads
 *   nopython dlopen N     dlopen and dlclose libm N times (this program does not link it,
 *                         so each dlopen maps it and each dlclose unmaps it)
 *   nopython start        nothing: the start-up of a small C program
 *
 * Prints the nanoseconds per operation (CLOCK_MONOTONIC) on one line. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static long turn, rounds;
static int plain;  /* pingpong-wait: pthread_cond_wait */

static void *player(void *arg) {
  const long me = (long)arg;
  struct timespec far;
  clock_gettime(CLOCK_REALTIME, &far);
  far.tv_sec += 3600;
  pthread_mutex_lock(&mu);
  for (long i = 0; i < rounds; ++i) {
    while ((turn & 1) != me) {
      if (plain)
        pthread_cond_wait(&cv, &mu);
      else
        pthread_cond_timedwait(&cv, &mu, &far);
    }
    ++turn;
    pthread_cond_signal(&cv);
  }
  pthread_mutex_unlock(&mu);
  return NULL;
}

static void *nothing(void *arg) { return arg; }

static double now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e9 + t.tv_nsec;
}

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "start";
  const long n = argc > 2 ? atol(argv[2]) : 1000;
  if (strcmp(mode, "start") == 0) return 0;
  const double t0 = now_ns();
  if (strcmp(mode, "pingpong") == 0 || strcmp(mode, "pingpong-wait") == 0) {
    rounds = n;
    plain = mode[8] != '\0';
    pthread_t a, b;
    pthread_create(&a, NULL, player, (void *)0L);
    pthread_create(&b, NULL, player, (void *)1L);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
  } else if (strcmp(mode, "join") == 0) {
    for (long i = 0; i < n; ++i) {
      pthread_t t;
      if (pthread_create(&t, NULL, nothing, NULL) != 0) return 1;
      pthread_join(t, NULL);
    }
  } else if (strcmp(mode, "dlopen") == 0) {
    for (long i = 0; i < n; ++i) {
      void *h = dlopen("libm.so.6", RTLD_NOW);
      if (!h) return 1;
      dlclose(h);
    }
  } else {
    fprintf(stderr, "usage: nopython [start | pingpong N | pingpong-wait N | join N | dlopen N]\n");
    return 2;
  }
  printf("%.1f\n", (now_ns() - t0) / n);
  return 0;
}
