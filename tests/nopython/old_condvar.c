// A program built against glibc's pre-2.3.2 condition variables (x86-64's
// pthread_cond_*@GLIBC_2.2.5: a pointer-sized object that glibc's compat functions fill
// with a new-ABI one on first use), as binaries from before 2003 are and as some
// programs still select with .symver. Every call below must reach those compat
// functions, with the guard as without it: an object handed to today's implementation
// by one call and to the compat one by the next is corrupted (tests/nopython/README.md).
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

__asm__(".symver pthread_cond_init, pthread_cond_init@GLIBC_2.2.5");
__asm__(".symver pthread_cond_destroy, pthread_cond_destroy@GLIBC_2.2.5");
__asm__(".symver pthread_cond_wait, pthread_cond_wait@GLIBC_2.2.5");
__asm__(".symver pthread_cond_timedwait, pthread_cond_timedwait@GLIBC_2.2.5");
__asm__(".symver pthread_cond_signal, pthread_cond_signal@GLIBC_2.2.5");
__asm__(".symver pthread_cond_broadcast, pthread_cond_broadcast@GLIBC_2.2.5");

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv;
static int turn, waiting;

static void *ponger(void *arg) {
  (void)arg;
  pthread_mutex_lock(&mu);
  for (int i = 0; i < 1000; i++) {
    while (turn != 1) pthread_cond_wait(&cv, &mu);
    turn = 0;
    pthread_cond_signal(&cv);
  }
  waiting++;
  pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&mu);
  return NULL;
}

// Which object defines the symbol of this version that dlvsym finds first: libc's compat
// function, with the guard or without it.
static const char *owner(const char *name, const char *version) {
  Dl_info info;
  void *p = dlvsym(RTLD_DEFAULT, name, version);
  if (!p || !dladdr(p, &info) || !info.dli_fname) return "(none)";
  const char *slash = strrchr(info.dli_fname, '/');
  return slash ? slash + 1 : info.dli_fname;
}

// A wait for `want` with a 5 s deadline per wait: a wake-up lost between the two ABIs
// shows as ETIMEDOUT (or a crash), never as a hang.
static int wait_turn(int want) {
  while (turn != want) {
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 5;
    int rc = pthread_cond_timedwait(&cv, &mu, &deadline);
    if (rc != 0 && turn != want) return rc;
  }
  return 0;
}

int main(void) {
  const char *names[] = {"pthread_cond_wait", "pthread_cond_timedwait", "pthread_cond_destroy"};
  for (int i = 0; i < 3; i++) printf("%s@GLIBC_2.2.5: %s\n", names[i], owner(names[i], "GLIBC_2.2.5"));
  fflush(stdout);

  pthread_cond_init(&cv, NULL);
  pthread_t t;
  pthread_create(&t, NULL, ponger, NULL);
  pthread_mutex_lock(&mu);
  int rc = 0, i;
  for (i = 0; i < 1000 && rc == 0; i++) {
    turn = 1;
    pthread_cond_signal(&cv);
    rc = wait_turn(0);
  }
  if (rc != 0) {
    printf("round trip %d: the signalled wait returned %s\n", i, strerror(rc));
    return 1;
  }
  while (!waiting) pthread_cond_wait(&cv, &mu);
  struct timespec deadline;
  clock_gettime(CLOCK_REALTIME, &deadline);
  deadline.tv_nsec += 20 * 1000 * 1000;
  if (deadline.tv_nsec >= 1000000000L) deadline.tv_sec++, deadline.tv_nsec -= 1000000000L;
  rc = pthread_cond_timedwait(&cv, &mu, &deadline);
  pthread_mutex_unlock(&mu);
  pthread_join(t, NULL);
  printf("1000 round trips; a timed wait nobody signals: %s\n", rc == ETIMEDOUT ? "ETIMEDOUT" : strerror(rc));
  printf("destroy: %d\n", pthread_cond_destroy(&cv));
  return 0;
}
