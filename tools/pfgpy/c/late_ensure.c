/* Scenario c: a native thread (created by a library, never seen by Python) makes its first
 * PyGILState_Ensure call after Py_FinalizeEx has returned. CPython has no thread state for
 * it and its runtime is gone: SIGSEGV on every version without a guard. With pyfinguard the
 * thread is parked, the join returns, and the program exits with its own status 7. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pthread.h>
#include "scen.h"

static gate_t wake;
static int wtid;
static volatile int passed;

static void *native(void *arg) {
  (void)arg;
  wtid = scen_tid();
  gate_wait(&wake);
  say("native: calling PyGILState_Ensure after finalization");
  PyGILState_STATE g = PyGILState_Ensure();
  (void)g;
  passed = 1;
  say("native: PASSED PyGILState_Ensure returned after finalization");
  return NULL;
}

int main(void) {
  gate_init(&wake);
  scen_py_init();
  pthread_t t;
  pthread_create(&t, NULL, native, NULL);
  PyRun_SimpleString("print('main: python ran', flush=True)");
  say("main: finalizing");
  int rc = Py_FinalizeEx();
  say("main: Py_FinalizeEx returned %d; waking native thread", rc);
  gate_open(&wake);
  return join_report_exit(t, "native thread", "native", &wtid, &passed);
}
