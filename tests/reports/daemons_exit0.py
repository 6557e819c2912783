# An ordinary Python program (tests/reports/reports.py strict): when it exits with status
# 0, daemon threads are still sleeping in a 0.5 ms time.sleep loop, blocked in os.read and
# blocked on a lock. Past CPython's point of no return the sleepers wake and reach for the
# GIL: under the guard those are routine parks (docs/diagnostics.md), which
# PYFINGUARD_STRICT must not count. Prints one line; the same output with and without the
# guard.
import os
import threading
import time


def sleeper():
    while True:
        time.sleep(0.0005)


def reader(fd):
    os.read(fd, 1)


def waiter(lock):
    lock.acquire()


r, w = os.pipe()
lock = threading.Lock()
lock.acquire()
threads = [threading.Thread(target=sleeper, daemon=True) for _ in range(3)]
threads.append(threading.Thread(target=reader, args=(r,), daemon=True))
threads.append(threading.Thread(target=waiter, args=(lock,), daemon=True))
for t in threads:
    t.start()
time.sleep(0.05)
print("main: %d daemon threads still running; exit 0" % len(threads))
