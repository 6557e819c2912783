# Python-level stress program: daemon threads at every stage when the interpreter exits.
#
#   python stress_py.py SEED        (pfgstress, from stress_ext.c, on PYTHONPATH)
#
# All choices come from SEED (printed). Daemon threads run bytecode with GIL drops, sleep,
# contend for a lock, read pipes that a native timer writes at a random time (before,
# during or after finalization), or bounce in and out of a C extension's
# Py_BEGIN_ALLOW_THREADS; native threads loop PyGILState_Ensure/Release, and late native
# threads make their first Ensure at a random moment around exit. The main thread runs
# bytecode or sleeps for a random time, then exits with status 7 (sys.exit -> Py_FinalizeEx
# with all of that going on). pfgstress's libc atexit handler prints "PARKED <n> pid <pid>".
import os
import random
import sys
import threading
import time

import pfgstress

seed = int(sys.argv[1])
rng = random.Random(seed)
WINDOW_US = 60000  # covers main's delay (<= 30 ms) plus Py_FinalizeEx itself
lock = threading.Lock()
kinds = []


def spinner(n):
    while True:
        sum(range(n))
        if n & 1:
            time.sleep(0)


def sleeper(us):
    while True:
        time.sleep(us / 1e6)


def locker(n):
    while True:
        with lock:
            sum(range(n))


def reader(fd):
    os.read(fd, 1)
    x = 0
    while True:
        x += 1


def native(us):
    while True:
        pfgstress.allow_threads(us)


for _ in range(rng.randint(1, 6)):
    kind = rng.choice(["spinner", "sleeper", "locker", "reader", "native"])
    kinds.append(kind)
    if kind == "spinner":
        args = (rng.randint(1, 5000),)
    elif kind == "sleeper":
        args = (rng.randint(0, 2000),)
    elif kind == "locker":
        args = (rng.randint(1, 2000),)
    elif kind == "reader":
        r, w = os.pipe()
        pfgstress.wake_later(w, rng.randrange(WINDOW_US))
        args = (r,)
    else:
        args = (rng.randint(0, 500),)
    threading.Thread(target=globals()[kind], args=args, daemon=True).start()

n_ens, n_late = rng.randint(0, 3), rng.randint(0, 3)
pfgstress.ensurers(n_ens, rng.getrandbits(63))
pfgstress.late(n_late, rng.getrandbits(63), WINDOW_US)
delay = rng.randrange(30000) / 1e6
busy = rng.random() < 0.5
print("seed %d: threads %s ensurers %d late %d main %s %.1f ms" % (
    seed, ",".join(kinds), n_ens, n_late, "busy" if busy else "sleep", delay * 1e3), flush=True)
end = time.monotonic() + delay
if busy:
    while time.monotonic() < end:
        pass
else:
    time.sleep(delay)
sys.exit(7)
