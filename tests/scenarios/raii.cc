// Scenario b: the seed with a C++ RAII release guard, as pybind11's gil_scoped_release and
// many hand-written bindings do: the destructor calls PyEval_RestoreThread.
//
// Without a guard, 3.9-3.13 pthread_exit the worker from take_gil inside the destructor;
// glibc's forced unwind then passes through a noexcept destructor and std::terminate aborts
// the process. With pyfinguard the worker is parked inside the destructor, the join
// returns, and the program exits with its own status 7.
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <thread>
#include "scen.h"

namespace {
gate_t ready, wake;
int wtid;
volatile int passed;

class ReleaseGil {  // what pybind11::gil_scoped_release boils down to
 public:
  ReleaseGil() : ts_(PyEval_SaveThread()) {}
  ~ReleaseGil() { PyEval_RestoreThread(ts_); }  // implicitly noexcept
  ReleaseGil(const ReleaseGil &) = delete;
  ReleaseGil &operator=(const ReleaseGil &) = delete;

 private:
  PyThreadState *ts_;
};

void worker() {
  wtid = scen_tid();
  PyGILState_Ensure();
  {
    ReleaseGil release;
    gate_open(&ready);
    gate_wait(&wake);
    say("worker: woke after finalization, leaving the release scope");
  }
  passed = 1;
  say("worker: PASSED the RAII restore after finalization");
}
}  // namespace

int main() {
  gate_init(&ready);
  gate_init(&wake);
  scen_py_init();
  std::thread t(worker);
  wait_without_gil(&ready);
  say("main: worker %d is inside its release scope; finalizing", wtid);
  int rc = Py_FinalizeEx();
  say("main: Py_FinalizeEx returned %d; waking worker", rc);
  gate_open(&wake);
  say("MARK main: joining worker");
  t.join();
  say("main: joined worker");
  say("STATE worker %s", thread_state(wtid, passed));
  say("main: exit 7");
  return 7;
}
