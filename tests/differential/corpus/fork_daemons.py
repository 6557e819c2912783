# os.fork with busy daemon threads: one child starts daemon threads of its own and exits
# through the interpreter's normal finalization while they work, one leaves with
# os._exit. The parent prints both statuses and exits with its daemons still working.
import hashlib
import os
import sys
import warnings
from _common import Started, daemon, exit_now, feeder

# 3.12+ warns (with the pid) that forking a multi-threaded process may deadlock.
warnings.filterwarnings("ignore", category=DeprecationWarning)
started = Started()


def busy():
    started.add()
    while True:
        hashlib.sha256(b"y" * 200000).digest()
        sum(range(500))


def reader(fd):
    started.add()
    while True:
        os.read(fd, 16)


r, w = os.pipe()
daemon(busy)
daemon(busy)
daemon(reader, r)
started.wait(3)
feeder([w])

pid = os.fork()
if pid == 0:
    child = Started()
    for _ in range(3):
        daemon(lambda: (child.add(), [hashlib.sha256(b"z" * 100000).digest() for _ in iter(int, 1)]))
    child.wait(3)
    print("child 1 exits with busy daemons", flush=True)
    sys.exit(21)
_, st1 = os.waitpid(pid, 0)
pid = os.fork()
if pid == 0:
    os._exit(22)
_, st2 = os.waitpid(pid, 0)
print("child statuses", os.WEXITSTATUS(st1), os.WEXITSTATUS(st2))
exit_now(12)
