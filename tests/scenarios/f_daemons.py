# Scenario f: a Python program whose daemon threads are blocked when it exits, one in
# os.read and one inside a C extension's Py_BEGIN_ALLOW_THREADS section. pfgtest's libc
# atexit handler wakes both after Py_FinalizeEx; their way back into Python
# (PyEval_RestoreThread) meets a finalized runtime. The program's own status is 7.
import os
import sys
import threading

import pfgtest

r, w = os.pipe()
pfgtest.wake_fd_at_exit(w)


def reader():
    pfgtest.register_thread("reader")
    os.read(r, 1)
    pfgtest.mark_passed()
    os.write(1, b"reader: PASSED os.read returned after finalization\n")


def native():
    pfgtest.block_in_allow_threads("native")
    os.write(1, b"native: PASSED left Py_BEGIN_ALLOW_THREADS after finalization\n")


for f in (reader, native):
    threading.Thread(target=f, name=f.__name__, daemon=True).start()
if not pfgtest.wait_blocked(2, 5.0):
    sys.exit(92)
print("main: daemon threads are blocked; exit 7", flush=True)
sys.exit(7)
