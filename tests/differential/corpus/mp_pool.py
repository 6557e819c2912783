# multiprocessing with the 'fork' or 'spawn' start method (argv[1]): a Pool maps a
# function, a Process whose own daemon threads are busy when it exits normally, and the
# parent exits with busy daemon threads of its own.
import hashlib
import multiprocessing
import sys
import threading
import warnings
from _common import Started, daemon, exit_now

warnings.filterwarnings("ignore", category=DeprecationWarning)


def square(x):
    return x * x


def busy(started):
    started.add()
    while True:
        hashlib.sha256(b"q" * 100000).digest()


def child_main(q):
    started = Started()
    for _ in range(3):
        daemon(busy, started)
    started.wait(3)
    q.put("child busy")
    sys.exit(23)


if __name__ == "__main__":
    ctx = multiprocessing.get_context(sys.argv[1])
    started = Started()
    for _ in range(2):
        daemon(busy, started)
    started.wait(2)
    with ctx.Pool(2) as pool:
        print("pool", pool.map(square, range(8)))
    q = ctx.Queue()
    p = ctx.Process(target=child_main, args=(q,))
    p.start()
    print("child says", q.get())
    p.join()
    print("child exit code", p.exitcode)
    exit_now(13)
