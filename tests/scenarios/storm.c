/* Scenario e: several native threads loop PyGILState_Ensure / PyGILState_Release while the
 * main thread finalizes. Where each thread is when finalization begins is up to the
 * scheduler, so the unguarded outcome varies from run to run (tests/matrix.py runs it
 * several times and accepts a set). With pyfinguard every thread that reaches for the GIL
 * after the point of no return is parked and the program exits with its own status 7. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pthread.h>
#include "scen.h"

#define NTHREADS 4
static int tids[NTHREADS];
static volatile int passed[NTHREADS];
static volatile int finalized;
static volatile int started;

static void *looper(void *arg) {
  int i = (int)(long)arg;
  tids[i] = scen_tid();
  __sync_fetch_and_add(&started, 1);
  for (long n = 0;; n++) {
    PyGILState_STATE g = PyGILState_Ensure();
    if (finalized && !passed[i]) {
      passed[i] = 1;
      say("looper%d: PASSED PyGILState_Ensure after Py_FinalizeEx returned", i);
    }
    PyObject *o = PyLong_FromLong(n);  /* touch the runtime while holding the GIL */
    Py_XDECREF(o);
    PyGILState_Release(g);
  }
  return NULL;
}

int main(void) {
  scen_py_init();
  pthread_t t[NTHREADS];
  for (long i = 0; i < NTHREADS; i++) pthread_create(&t[i], NULL, looper, (void *)i);
  PyThreadState *mts = PyEval_SaveThread();
  while (started < NTHREADS) sleep_ms(1);
  sleep_ms(30);  /* let them contend for the GIL */
  PyEval_RestoreThread(mts);
  say("main: %d threads looping; finalizing", NTHREADS);
  int rc = Py_FinalizeEx();
  finalized = 1;
  say("MARK main: Py_FinalizeEx returned %d; watching the threads (up to 2 s)", rc);
  sleep_ms(100);
  /* Each thread gets until a common deadline to settle (crash, exit, park, pass); on a
   * loaded machine a thread may not be scheduled for a while, and a short window would
   * report it "blocked" although it is merely late. A thread blocked for good costs the
   * full 2 s. */
  long long end = now_ms() + 2000;
  const char *st[NTHREADS];
  for (int i = 0; i < NTHREADS; i++) {
    int left = (int)(end - now_ms());
    st[i] = settle(tids[i], &passed[i], left > 0 ? left : 0);
  }
  for (int i = 0; i < NTHREADS; i++) say("STATE looper%d %s", i, st[i]);
  say("main: exit 7");
  /* No join: on 3.6-3.8 threads wait forever in take_gil; the outcome above says so. */
  return 7;
}
