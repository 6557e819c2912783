/* Scenario a, the seed (bpo-33608 story): a worker saves its thread state with
 * PyEval_SaveThread, blocks in a native call, wakes after Py_FinalizeEx has returned and
 * calls PyEval_RestoreThread with a thread state that finalization freed. The main thread
 * then joins it, as a program that owns its worker does.
 *
 * Without a guard: 3.6-3.8 wait forever in take_gil (the join hangs), 3.9-3.13 pthread_exit
 * the worker from take_gil. With pyfinguard the worker is parked, the join returns, and the
 * program exits with its own status 7. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pthread.h>
#include "scen.h"

static gate_t ready, wake;
static int wtid;
static volatile int passed;

static void *worker(void *arg) {
  (void)arg;
  wtid = scen_tid();
  PyGILState_STATE g = PyGILState_Ensure();   /* gives this thread its thread state */
  (void)g;
  PyThreadState *ts = PyEval_SaveThread();    /* Py_BEGIN_ALLOW_THREADS by hand */
  gate_open(&ready);
  gate_wait(&wake);                           /* a blocking native call */
  say("worker: woke after finalization, calling PyEval_RestoreThread");
  PyEval_RestoreThread(ts);
  passed = 1;
  say("worker: PASSED PyEval_RestoreThread returned after finalization");
  return NULL;
}

int main(void) {
  gate_init(&ready);
  gate_init(&wake);
  scen_py_init();
  pthread_t t;
  pthread_create(&t, NULL, worker, NULL);
  wait_without_gil(&ready);   /* let the worker take the GIL once */
  say("main: worker %d saved its thread state; finalizing", wtid);
  int rc = Py_FinalizeEx();
  say("main: Py_FinalizeEx returned %d; waking worker", rc);
  gate_open(&wake);
  return join_report_exit(t, "worker", "worker", &wtid, &passed);
}
