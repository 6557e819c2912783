# An exit that legitimately waits: native/slowjoin.cc's exit-time destructor joins a
# native worker finishing a task of argv[2] ms (it never calls Python), while 4 Python
# daemon threads still wake every millisecond (late threads a guard parks or ends at
# finalization: the exit waits while they are held). They sleep rather than compute:
# busy daemons crash pyenv 3.10 when the exit lasts beyond finalization (SIGSEGV in 3 of
# 3 runs with a 2 s task, ~half with 200 ms), and this program is the clean slow exit.
# argv: LIB MS. Own status 25.
import ctypes
import sys
import time
from _common import Started, daemon, exit_now

lib = ctypes.CDLL(sys.argv[1])
ms = int(sys.argv[2])
started = Started()


def ticker():
    started.add()
    while True:
        time.sleep(0.001)


for _ in range(4):
    daemon(ticker)
started.wait(4)
lib.slowjoin_start(ms)
print("slowjoin: 4 ticking daemons; a native task of %d ms joined at exit" % ms)
exit_now(25)
