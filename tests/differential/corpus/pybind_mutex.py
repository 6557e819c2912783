# A pybind11 module (native/pfgmutex.cc) whose daemon thread holds a std::mutex around a
# py::gil_scoped_release region (blocked in read(2) with the GIL released) when the
# program exits; the module's exit-time destructor (after Py_FinalizeEx) wakes it and then
# takes the mutex. argv: MODULE_DIR. Own status 23.
import os
import sys
import time

sys.path.insert(0, sys.argv[1])
import pfgmutex  # noqa: E402
from _common import daemon, exit_now  # noqa: E402

r, w = os.pipe()
daemon(pfgmutex.serve, r, w)
deadline = time.monotonic() + 60
while not pfgmutex.locked() and time.monotonic() < deadline:
    time.sleep(0.005)
print("pfgmutex: daemon thread serving inside gil_scoped_release:", pfgmutex.locked())
exit_now(23)
