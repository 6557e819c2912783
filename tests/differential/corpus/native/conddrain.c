/* conddrain: a C worker pool whose exit-time destructor drains it on a condition variable.
 * Each worker waits for jobs and calls the registered callback (a ctypes or cffi callback
 * into Python) for each; when the pool stops, each worker makes one final callback (its
 * "closing" notification) and counts itself finished. The library's destructor -- run by
 * exit(), after Py_FinalizeEx -- stops the pool and waits on the condition variable until
 * every worker finished: with no time limit (conddrain_open(n, 0)), or at most bound_ms
 * milliseconds (conddrain_open(n, bound_ms)).
 *
 * The final callbacks run after finalization: PyGILState_Ensure on a finalized runtime.
 * A worker that crashes there takes the process with it; one ended by pthread_exit never
 * counts itself finished; one blocked for ever (a guard's park) neither. No Python headers:
 * bound with ctypes or cffi, built once for every interpreter. */
#define _GNU_SOURCE 1 /* pthread_setname_np */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

typedef int (*conddrain_cb)(int worker, int job);

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv;            /* CLOCK_MONOTONIC, set up by conddrain_open */
static conddrain_cb callback;
static int workers, finished, stopping, jobs_posted, jobs_taken, jobs_done, bound_ms;

static void *worker(void *arg) {
  int id = (int)(long)arg;
  pthread_mutex_lock(&mu);
  for (;;) {
    while (!stopping && jobs_posted == jobs_taken)
      pthread_cond_wait(&cv, &mu);
    if (stopping)
      break;
    int job = jobs_taken++;
    pthread_mutex_unlock(&mu);
    callback(id, job);
    pthread_mutex_lock(&mu);
    jobs_done++;
    pthread_cond_broadcast(&cv);
  }
  pthread_mutex_unlock(&mu);
  callback(id, -1);            /* the final callback: after finalization at exit */
  pthread_mutex_lock(&mu);
  finished++;
  pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&mu);
  return NULL;
}

__attribute__((visibility("default"))) int conddrain_open(int n, int bound, conddrain_cb cb) {
  pthread_condattr_t a;
  pthread_condattr_init(&a);
  pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
  pthread_cond_init(&cv, &a);
  callback = cb;
  bound_ms = bound;
  for (int i = 0; i < n; i++) {
    pthread_t t;
    if (pthread_create(&t, NULL, worker, (void *)(long)i) != 0)
      return -1;
    pthread_setname_np(t, "conddrain");
    pthread_detach(t);
    workers++;
  }
  return workers;
}

/* Post n jobs and wait until they are done (called with the GIL released). */
__attribute__((visibility("default"))) int conddrain_run(int n) {
  pthread_mutex_lock(&mu);
  jobs_posted += n;
  pthread_cond_broadcast(&cv);
  while (jobs_done < jobs_posted)
    pthread_cond_wait(&cv, &mu);
  int done = jobs_done;
  pthread_mutex_unlock(&mu);
  return done;
}

__attribute__((destructor)) static void conddrain_close(void) {
  if (!workers)
    return;
  struct timespec deadline;
  clock_gettime(CLOCK_MONOTONIC, &deadline);
  deadline.tv_sec += bound_ms / 1000;
  deadline.tv_nsec += (long)(bound_ms % 1000) * 1000000L;
  if (deadline.tv_nsec >= 1000000000L) {
    deadline.tv_sec++;
    deadline.tv_nsec -= 1000000000L;
  }
  pthread_mutex_lock(&mu);
  stopping = 1;
  pthread_cond_broadcast(&cv);
  while (finished < workers) {
    if (bound_ms <= 0)
      pthread_cond_wait(&cv, &mu);
    else if (pthread_cond_timedwait(&cv, &mu, &deadline) == ETIMEDOUT)
      break;
  }
  pthread_mutex_unlock(&mu);
}
