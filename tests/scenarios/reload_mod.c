/* The module of scenario k (reload.c): a small shared library linked to libpython
 * (DT_NEEDED), as Apache's mod_wsgi is. It calls the C API through its own PLT, so with
 * the guard preloaded its calls bind to the guard's definitions, which must forward them
 * to the libpython mapped *now* -- not to one an earlier dlclose unmapped.
 *
 * rm_session(late): initialize, run Python threads and a native PyGILState thread,
 * finalize. With late != 0 a native thread that has never used Python waits, and after
 * Py_FinalizeEx the host wakes it (rm_wake_late) to call PyGILState_Ensure: it must be
 * parked, as in scenario c. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pthread.h>
#include "scen.h"

static gate_t wake, ready;
static int late_tid;
static volatile int late_passed;

static void *native(void *arg) {
  PyGILState_STATE g = PyGILState_Ensure();
  PyRun_SimpleString((const char *)arg);
  PyGILState_Release(g);
  return NULL;
}

static void *late(void *arg) {
  (void)arg;
  late_tid = scen_tid();
  gate_open(&ready);
  gate_wait(&wake);
  say("late: first PyGILState_Ensure after finalization");
  PyGILState_Ensure();
  late_passed = 1;
  say("late: PASSED PyGILState_Ensure after finalization");
  return NULL;
}

__attribute__((visibility("default"))) int rm_session(int pass, int with_late) {
  scen_py_init();
  PyRun_SimpleString(
      "import threading, time\n"
      "out = []\n"
      "ts = [threading.Thread(target=lambda i=i: (time.sleep(0.01 * i), out.append(i))) for i in range(3)]\n"
      "[t.start() for t in ts]\n"
      "[t.join() for t in ts]\n"
      "print('python: threads joined', sorted(out), flush=True)\n");
  PyThreadState *mts = PyEval_SaveThread();
  pthread_t t, l;
  pthread_create(&t, NULL, native, "print('native: ran python via PyGILState_Ensure', flush=True)");
  pthread_join(t, NULL);
  if (with_late) {
    gate_init(&wake);
    gate_init(&ready);
    pthread_create(&l, NULL, late, NULL);
    gate_wait(&ready);
  }
  PyEval_RestoreThread(mts);
  int rc = Py_FinalizeEx();
  say("module: pass %d finalized with %d", pass, rc);
  return rc;
}

__attribute__((visibility("default"))) const char *rm_wake_late(void) {
  gate_open(&wake);
  return settle(late_tid, &late_passed, 1000);
}
