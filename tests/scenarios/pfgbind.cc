// pfgbind: a real pybind11 module (Debian's python3-pybind11) for scenario g.
// wait_released(fd) reads one byte from fd inside py::gil_scoped_release: the GIL is given
// back by the guard's destructor (PyEval_RestoreThread). If that happens after
// finalization, CPython 3.9-3.13 pthread_exit the thread from inside the destructor and
// the forced unwind through a noexcept destructor aborts the process.
#include <pybind11/pybind11.h>

#include <cerrno>
#include <unistd.h>

namespace py = pybind11;

PYBIND11_MODULE(pfgbind, m) {
  m.def("wait_released", [](int fd) {
    py::gil_scoped_release release;
    char c;
    ssize_t r;
    do {
      r = read(fd, &c, 1);
    } while (r < 0 && errno == EINTR);
    return r;
  });
}
