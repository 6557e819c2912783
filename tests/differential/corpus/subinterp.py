# Sub-interpreters (3.12+: _xxsubinterpreters; 3.13+: _interpreters): the main thread runs
# code in a sub-interpreter and prints its answer; a daemon thread keeps running code in
# a second sub-interpreter, and busy daemon threads of the main interpreter run, when the
# program exits (3.13+ finalizes the remaining sub-interpreter itself). 3.12 aborts at exit
# when a sub-interpreter still exists ("remaining subinterpreters"), so there a
# non-daemon thread runs the second sub-interpreter, still working when the program
# starts to exit, and destroys it before the interpreter joins it. It stops when
# threading's shutdown begins (threading._register_atexit, 3.9+), not after a fixed
# number of runs: each run_string() takes the main GIL back from the busy daemons
# (PyThreadState_Swap -> take_gil, up to a switch interval), so the exit time of a
# fixed count was however many runs were left: about 0.2 s beside another process,
# 2.2 s alone on 2 cores, with and without the guard (docs/reliability.md, section 9;
# gdb on a slow exit: the runner in take_gil, the main thread in
# wait_for_thread_shutdown).
import os
import sys
from _common import Started, daemon, exit_now, skip

if sys.version_info < (3, 12):
    skip("sub-interpreters from Python need _xxsubinterpreters (3.12+)")
daemon_in_sub = True
try:
    import _interpreters as interpreters
except ImportError:
    daemon_in_sub = False
    try:
        import _xxsubinterpreters as interpreters
    except ImportError:
        skip("neither _interpreters nor _xxsubinterpreters is available")

started = Started()


def busy():
    started.add()
    while True:
        sum(range(1000))


def runner(interp):
    started.add()
    while True:
        interpreters.run_string(interp, "x = sum(range(2000))")


def runner_until_exit(interp, stopping):
    started.add()
    while not stopping.is_set():
        interpreters.run_string(interp, "x = sum(range(2000))")
    interpreters.destroy(interp)


r, w = os.pipe()
a = interpreters.create()
interpreters.run_string(a, "import os; os.write(%d, str(sum(range(100))).encode())" % w)
print("sub-interpreter computed", os.read(r, 100).decode())
interpreters.destroy(a)
b = interpreters.create()
if daemon_in_sub:
    daemon(runner, b)
else:
    import threading
    stopping = threading.Event()
    threading._register_atexit(stopping.set)
    threading.Thread(target=runner_until_exit, args=(b, stopping)).start()
daemon(busy)
daemon(busy)
started.wait(3)
print("threads running, one in a sub-interpreter")
exit_now(18)
