# 1,000 daemon threads at exit: 250 blocked in os.read, 250 in Lock.acquire on a lock
# never released, 250 in short sleeps, 250 running bytecode with time.sleep(0).
import os
import threading
import time
from _common import Started, daemon, exit_now, feeder

started = Started()
go = threading.Event()        # the working loops start once all 1,000 threads exist
held = threading.Lock()
held.acquire()
r, w = os.pipe()


def reader():
    started.add()
    go.wait()
    while True:
        os.read(r, 1)


def locker():
    started.add()
    go.wait()
    held.acquire()
    raise RuntimeError("lock was released")


def sleeper():
    started.add()
    go.wait()
    while True:
        time.sleep(0.001)


def spinner():
    started.add()
    go.wait()
    while True:
        sum(range(50))
        time.sleep(0)


kinds = [reader, locker, sleeper, spinner]
for i in range(1000):
    daemon(kinds[i % 4])
started.wait(1000)
go.set()
feeder([w], 0.0005)
print("1000 daemon threads started")
exit_now(17)
