/* Scenario h (embedding): an ordinary embedder that must behave identically with and
 * without the guard. It runs Python with threads (joined normally), finalizes, initializes
 * a second runtime (a new guard generation, with no stale thread anywhere), uses threads
 * and PyGILState from native threads while Python is alive, finalizes again, and exits
 * with its own status 5. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pthread.h>
#include "scen.h"

static void *native(void *arg) {
  PyGILState_STATE g = PyGILState_Ensure();
  PyRun_SimpleString((const char *)arg);
  PyGILState_Release(g);
  return NULL;
}

static void round_trip(int round) {
  scen_py_init();
  PyRun_SimpleString(
      "import threading, time\n"
      "out = []\n"
      "ts = [threading.Thread(target=lambda i=i: (time.sleep(0.01 * i), out.append(i))) for i in range(4)]\n"
      "[t.start() for t in ts]\n"
      "[t.join() for t in ts]\n"
      "print('python: threads joined', sorted(out), flush=True)\n");
  PyThreadState *mts = PyEval_SaveThread();
  pthread_t t;
  pthread_create(&t, NULL, native, "print('native: ran python via PyGILState_Ensure', flush=True)");
  pthread_join(t, NULL);
  PyEval_RestoreThread(mts);
  /* A non-daemon thread still running when finalization starts: Py_FinalizeEx joins it,
   * and it ends normally (on 3.6-3.8 through CPython's own pthread_exit call). */
  PyRun_SimpleString(
      "import threading, time\n"
      "threading.Thread(target=lambda: (time.sleep(0.05), print('python: late non-daemon thread done', flush=True))).start()\n");
  int rc = Py_FinalizeEx();
  say("main: round %d finalized with %d", round, rc);
}

int main(void) {
  round_trip(1);
  round_trip(2);
  say("main: exit 5");
  return 5;
}
