"""A daemon thread blocked in os.read when the program exits, woken only after Python's
finalization: by close(42), which the C library's exit() runs as an on_exit handler after
Py_FinalizeEx (the pipe's write end is fd 42, and 42 is the exit status handed to the
handler). Further on_exit handlers (2,000 calls of usleep(42): 0.32 s on the project
machine, timed from ctypes) keep the process alive while the woken thread reaches for the
GIL, so the guard's report is written before the exit. Standard library only (ctypes): it runs where nothing can be compiled.

Prints where the guard is mapped from and LD_PRELOAD; exits with status 42.
"""
import ctypes
import os
import sys
import threading
import time

r, w = os.pipe()
os.dup2(w, 42)
os.close(w)
libc = ctypes.CDLL(None, use_errno=True)
libc.on_exit.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
# Handlers run last registered first: the usleeps after close(42).
for _ in range(2000):
    libc.on_exit(ctypes.cast(libc.usleep, ctypes.c_void_p), None)
libc.on_exit(ctypes.cast(libc.close, ctypes.c_void_p), None)


READ_SYSCALL = {"x86_64": "0", "aarch64": "63"}.get(os.uname().machine)
tid = []


def reader():
    tid.append(threading.get_native_id())
    os.read(r, 1)
    os.write(1, b"reader: ran Python after finalization\n")


threading.Thread(target=reader, daemon=True).start()
# Until the reader sits in read(2) (/proc/self/task/TID/syscall names the system call a
# blocked thread is in).
deadline = time.monotonic() + 5
while time.monotonic() < deadline:
    if tid:
        with open("/proc/self/task/%d/syscall" % tid[0]) as f:
            nr = f.read().split()[0]
        if nr == READ_SYSCALL or (READ_SYSCALL is None and nr != "running"):
            break
    time.sleep(0.01)
else:
    print("main: the reader thread never blocked in read(2)")
    sys.exit(3)
maps = sorted(set(line.split()[-1] for line in open("/proc/self/maps")
                  if "libpyfinguard" in line))
print("guard mapped:", " ".join(maps) or "-")
print("LD_PRELOAD:", os.environ.get("LD_PRELOAD", "-"))
print("main: exiting with 42, the reader blocked in os.read")
sys.stdout.flush()
sys.exit(42)
