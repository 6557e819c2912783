# An exit that legitimately waits: native/slowjoin.cc's exit-time destructor joins a
# native worker finishing a task of argv[2] ms (it never calls Python), while 4 Python
# daemon threads are still busy (late threads a guard parks or ends at finalization).
# argv: LIB MS. Own status 25.
import ctypes
import sys
from _common import Started, daemon, exit_now

lib = ctypes.CDLL(sys.argv[1])
ms = int(sys.argv[2])
started = Started()


def busy():
    started.add()
    x = 0
    while True:
        x = (x * 31 + 7) % 1000003


for _ in range(4):
    daemon(busy)
started.wait(4)
lib.slowjoin_start(ms)
print("slowjoin: 4 busy daemons; a native task of %d ms joined at exit" % ms)
exit_now(25)
