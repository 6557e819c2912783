/* Scenario j: exits that must not hang on a parked thread. A C++ static object owns a
 * worker thread and joins it in its destructor (Arrow's thread pools do this; CPython
 * 3.14 hangs forever there). The worker's first PyGILState_Ensure comes after
 * Py_FinalizeEx: SIGSEGV without a guard. With pyfinguard the worker is parked, the
 * destructor's join completes because the target will never run again, and the
 * process exits with its own status 7 within seconds. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <thread>
#include "scen.h"

static gate_t wake;
static int wtid;
static volatile int passed;

struct Pool {
  std::thread worker;
  Pool() {
    gate_init(&wake);
    worker = std::thread([] {
      wtid = scen_tid();
      gate_wait(&wake);
      say("worker: PyGILState_Ensure after finalization");
      PyGILState_STATE g = PyGILState_Ensure();
      (void)g;
      passed = 1;
      say("worker: PASSED PyGILState_Ensure after finalization");
    });
  }
  ~Pool() {
    say("MARK dtor: joining the worker");
    long long t0 = now_ms();
    worker.join();
    say("dtor: joined after %lld ms", now_ms() - t0);
    say("STATE worker %s", thread_state(wtid, passed));
  }
};

static Pool pool;  // destroyed after main returns, after Python is finalized

int main() {
  scen_py_init();
  PyRun_SimpleString("print('main: python ran', flush=True)");
  int rc = Py_FinalizeEx();
  say("main: Py_FinalizeEx returned %d; waking the worker, exit 7", rc);
  gate_open(&wake);
  sleep_ms(100);
  return 7;
}
