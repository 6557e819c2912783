# The acceptance case for `pyfinguard run`: a pybind11 module's daemon thread waits
# in py::gil_scoped_release (pfgbind.wait_released) and is woken by pfgtest's libc atexit
# handler after Py_FinalizeEx; the guard's destructor then calls PyEval_RestoreThread on a
# finalized runtime. Without pyfinguard, CPython 3.9-3.13 pthread_exit the thread inside a
# noexcept destructor: SIGABRT. With it, the thread is parked and this program exits 0.
import os
import sys
import threading

import pfgbind
import pfgtest

r, w = os.pipe()
pfgtest.wake_fd_at_exit(w)


def worker():
    pfgtest.register_thread("pybind11-worker")
    pfgbind.wait_released(r)
    pfgtest.mark_passed()


threading.Thread(target=worker, name="pybind11-worker", daemon=True).start()
if not pfgtest.wait_blocked(1, 5.0):
    sys.exit(92)   # the worker never blocked: the scenario did not set up
print("main: worker waits in gil_scoped_release; exiting 0", flush=True)
