// lockbus: a C++ event bus of the shape device SDKs, message buses and market-data feeds
// have. Worker threads deliver events by calling the registered listeners (plain function
// pointers: a ctypes CFUNCTYPE or cffi callback into Python) inside a std::lock_guard on
// the bus mutex. The namespace-scope Bus object's destructor -- run by exit(), after
// Py_FinalizeEx -- stops the workers and clears the listeners under the same mutex, then
// prints one line (write(2): nothing left in a stdio buffer).
//
// A worker whose listener calls Python after finalization is ended by CPython 3.9-3.13.7
// with pthread_exit: the forced unwind runs the lock_guard's destructor, the mutex is free
// and the destructor proceeds. A worker blocked for ever instead (3.6-3.8's take_gil,
// 3.13.8+/3.14's hang, a guard's park) keeps the mutex, and the destructor waits for it.
// No Python headers: bound with ctypes or cffi, built once for every interpreter.
#include <atomic>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>
#include <unistd.h>

extern "C" typedef int (*lockbus_listener)(int event, void *user);

namespace {

struct Bus {
  std::mutex mu;
  std::vector<std::pair<lockbus_listener, void *>> listeners;
  std::atomic<bool> stop{false};
  std::atomic<long> delivered{0};
  int workers = 0;

  // One delivery round: every listener, under the bus mutex.
  bool deliver(int event) {
    std::lock_guard<std::mutex> g(mu);
    if (stop.load())
      return false;
    for (auto &l : listeners)
      l.first(event, l.second);
    delivered.fetch_add(1);
    return true;
  }

  void run(int period_us) {
    for (int ev = 0; deliver(ev); ev++)
      if (period_us > 0)
        usleep(period_us);
  }

  ~Bus() {
    stop.store(true);
    std::lock_guard<std::mutex> g(mu);
    size_t n = listeners.size();
    listeners.clear();
    char line[128];
    int len = snprintf(line, sizeof line, "lockbus: bus stopped, %zu listener(s) cleared\n", n);
    if (write(1, line, len) < 0) {
    }
  }
};

Bus bus;

}  // namespace

extern "C" {

__attribute__((visibility("default"))) int lockbus_subscribe(lockbus_listener f, void *user) {
  std::lock_guard<std::mutex> g(bus.mu);
  bus.listeners.emplace_back(f, user);
  return (int)bus.listeners.size();
}

// n detached native workers delivering an event every period_us microseconds.
__attribute__((visibility("default"))) int lockbus_start(int n, int period_us) {
  for (int i = 0; i < n; i++) {
    std::thread t([period_us] { bus.run(period_us); });
    pthread_setname_np(t.native_handle(), "lockbus-worker");
    t.detach();
  }
  bus.workers += n;
  return bus.workers;
}

// The same delivery loop in the calling thread (a Python thread that called in with the
// GIL released), until the bus stops.
__attribute__((visibility("default"))) void lockbus_run(int period_us) { bus.run(period_us); }

__attribute__((visibility("default"))) long lockbus_delivered(void) { return bus.delivered.load(); }
}
