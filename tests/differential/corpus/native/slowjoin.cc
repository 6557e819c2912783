// slowjoin: a C++ library whose namespace-scope Pool object's destructor -- run by exit(),
// after Py_FinalizeEx -- joins a native worker that is still finishing a task started just
// before the program exits (slowjoin_start(ms): the task lasts ms milliseconds and never
// touches Python). The exit legitimately waits that long; a guard that bounds exits
// blocked by parked threads must not cut it short. Prints one line when joined.
#include <cstdio>
#include <thread>
#include <unistd.h>

namespace {

struct Pool {
  std::thread worker;
  ~Pool() {
    if (!worker.joinable())
      return;
    worker.join();
    const char line[] = "slowjoin: worker finished its task, joined\n";
    if (write(1, line, sizeof line - 1) < 0) {
    }
  }
};

Pool pool;

}  // namespace

extern "C" __attribute__((visibility("default"))) void slowjoin_start(int ms) {
  pool.worker = std::thread([ms] { usleep((useconds_t)ms * 1000); });
  pthread_setname_np(pool.worker.native_handle(), "slowjoin-task");
}
