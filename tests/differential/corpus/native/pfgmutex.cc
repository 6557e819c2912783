// pfgmutex: a pybind11 module (Debian's python3-pybind11) that holds a std::mutex around a
// py::gil_scoped_release region, as a driver binding does around a blocking device read.
// serve(fd): lock the module's mutex, release the GIL, read one byte from fd (blocks until
// the module's exit-time destructor writes it), restore the GIL on the way out.
// The namespace-scope Device object's destructor -- run by exit(), after Py_FinalizeEx --
// wakes the reader and then takes the mutex to close the device, and prints one line.
//
// The woken reader restores the GIL on a finalized runtime inside gil_scoped_release's
// destructor: CPython 3.9-3.13.7 pthread_exit it there, and the forced unwind through that
// noexcept destructor calls std::terminate (abort); 3.6-3.8 leave it in take_gil for ever,
// holding the mutex, and the exit waits for it.
#include <pybind11/pybind11.h>

#include <cerrno>
#include <cstdio>
#include <mutex>
#include <unistd.h>

namespace py = pybind11;

namespace {

struct Device {
  std::mutex mu;
  int wake_fd = -1;
  ~Device() {
    if (wake_fd >= 0) {
      char c = 'x';
      if (write(wake_fd, &c, 1) < 0) {
      }
    }
    std::lock_guard<std::mutex> g(mu);
    const char line[] = "pfgmutex: device closed\n";
    if (write(1, line, sizeof line - 1) < 0) {
    }
  }
};

Device device;

}  // namespace

PYBIND11_MODULE(pfgmutex, m) {
  m.def("serve", [](int read_fd, int wake_fd) {
    std::lock_guard<std::mutex> g(device.mu);
    device.wake_fd = wake_fd;
    py::gil_scoped_release release;
    char c;
    ssize_t r;
    do {
      r = read(read_fd, &c, 1);
    } while (r < 0 && errno == EINTR);
    return r;
  });
  m.def("locked", [] {
    // Has a serve() call taken the mutex? (try_lock from the main thread, GIL held.)
    if (device.mu.try_lock()) {
      device.mu.unlock();
      return false;
    }
    return true;
  });
}
