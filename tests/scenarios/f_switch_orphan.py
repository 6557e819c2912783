# Scenario f-switch-orphan: daemon threads running bytecode queue for the GIL while the
# main thread's last atexit handler is C code holding it (sum over a range: no bytecode, so
# no eval-breaker check). After 5 ms each waiter asks for the GIL (gil_drop_request) and
# waits on. Then the runtime passes its point of no return, and an object's __del__ runs
# bytecode during teardown: the eval loop honours the old request, drops the GIL and waits,
# without a timeout, until a waiter has taken it (drop_gil's FORCE_SWITCHING wait).
# CPython lets the waiter take it, then ends the thread (<= 3.13) or hangs it (3.14+).
# A waiter stopped before it takes the GIL must not leave the finalizer waiting for ever
# (docs/design.md, "Threads already waiting in take_gil"). The program's own status is 7.
import atexit
import os
import sys
import threading
import time

import pfgtest

started = threading.Semaphore(0)


def range_for(seconds):
    # C work measured, not assumed: sum over a range runs ~600 times slower under
    # qemu-user than natively, so a fixed count is either too short here or minutes there.
    n = 1000
    while True:
        t = time.monotonic()
        sum(range(n))
        dt = time.monotonic() - t
        if dt >= 0.02:
            return range(int(n * seconds / dt))
        n *= 4


def spin(name):
    pfgtest.register_thread(name)
    started.release()
    while True:
        sum(range(1000))


class Slow(object):
    # Bytecode past the point of no return: sys's dictionary is cleared late in teardown.
    def __del__(self, mono=time.monotonic, w=os.write):
        t = mono()
        while mono() - t < 0.2:
            pass
        w(1, b"main: __del__ ran past the point of no return\n")


work = range_for(0.2)  # measured before the daemon threads compete for the GIL
for i in range(2):
    threading.Thread(target=spin, args=("spin%d" % i,), daemon=True).start()
for i in range(2):
    started.acquire()
sys.pfg_switch_orphan = Slow()
atexit.register(sum, work)  # registered last, so run last: ~0.2 s of C
print("MARK main: exiting with 2 daemon threads running bytecode; exit 7", flush=True)
sys.exit(7)
