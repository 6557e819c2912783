# fork under the guard, run by tests/stress/fork_test.py (pfgstress on PYTHONPATH).
#
# The parent holds guard state (daemon threads blocked with saved thread states, a late
# native thread armed for exit), then forks twice:
#   os.fork                  the child reports pyfinguard_parked_count() (must be 0), arms
#                            its own late native thread and a daemon thread blocked in
#                            os.read that is woken at exit, and exits through a normal
#                            finalization (sys.exit): its late threads must be parked by
#                            the child's guard ("PARKED 2 pid <child>"), exit status 0.
#   multiprocessing 'fork'   the child checks its parked count is 0, runs threads that
#                            release and reacquire the GIL, exits 5.
# The parent then exits 7; its own late thread parks ("PARKED 1 pid <parent>").
# When it is embedded after a re-initialization (fork_embed.c), the parent already has
# parked threads when it forks.
import ctypes
import multiprocessing
import os
import sys
import threading
import time

import pfgstress


def guard_count():
    try:
        f = ctypes.CDLL(None).pyfinguard_parked_count
    except AttributeError:
        return -1
    f.restype = ctypes.c_uint
    return f()


def work():
    for _ in range(200):
        time.sleep(0)


def mp_child():
    print("mp-child: parked %d" % guard_count(), flush=True)
    ts = [threading.Thread(target=work) for _ in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    sys.stdout.flush()
    os._exit(5 if guard_count() in (0, -1) else 6)


r0, w0 = os.pipe()
for _ in range(3):
    threading.Thread(target=os.read, args=(r0, 1), daemon=True).start()
pfgstress.late_at_exit()
time.sleep(0.1)
print("parent: pid %d parked %d before fork" % (os.getpid(), guard_count()), flush=True)

pid = os.fork()
if pid == 0:
    print("child: pid %d parked %d after fork" % (os.getpid(), guard_count()), flush=True)
    r1, w1 = os.pipe()
    pfgstress.late_at_exit()
    threading.Thread(target=os.read, args=(r1, 1), daemon=True).start()
    pfgstress.wake_later(w1, 150000)  # 150 ms: after this child's finalization
    work()
    sys.exit(0)
_, st = os.waitpid(pid, 0)
print("parent: os.fork child status %d" % (os.WEXITSTATUS(st) if os.WIFEXITED(st) else -os.WTERMSIG(st)),
      flush=True)

ctx = multiprocessing.get_context("fork")
p = ctx.Process(target=mp_child)
p.start()
p.join(60)
print("parent: multiprocessing child exitcode %s" % p.exitcode, flush=True)
sys.exit(7)
