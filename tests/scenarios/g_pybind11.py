# Scenario g: a real pybind11 module whose daemon thread waits inside
# py::gil_scoped_release (pfgbind.wait_released). pfgtest's libc atexit handler wakes it
# after Py_FinalizeEx; the guard's destructor calls PyEval_RestoreThread on a finalized
# runtime. 3.9-3.13 abort without pyfinguard. The program's own status is 7.
import os
import sys
import threading

import pfgbind
import pfgtest

r, w = os.pipe()
pfgtest.wake_fd_at_exit(w)


def waiter():
    pfgtest.register_thread("waiter")
    pfgbind.wait_released(r)
    pfgtest.mark_passed()
    os.write(1, b"waiter: PASSED gil_scoped_release restored after finalization\n")


threading.Thread(target=waiter, name="waiter", daemon=True).start()
if not pfgtest.wait_blocked(1, 5.0):
    sys.exit(92)
print("main: pybind11 thread waits in gil_scoped_release; exit 7", flush=True)
sys.exit(7)
