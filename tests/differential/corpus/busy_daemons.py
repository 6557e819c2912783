# Busy daemon threads of every kind, meant to run under -X dev, -X tracemalloc=5 and
# -X faulthandler (the runner adds the flags): allocating bytecode, threads that start
# and join short threads (a new thread allocates its state with the raw allocator, without
# the GIL: tracemalloc's hook then takes the GIL itself), zlib (raw allocations with the
# GIL released), file I/O, pipes, sleeps. The main thread prints what the flags turned on.
# argv[1] == "no-churn": no thread starts at all once the daemons run. A thread that
# starts while the interpreter finalizes can crash CPython 3.9-3.11 under -X dev (SIGSEGV
# in t_bootstrap -> _PyThreadState_Init/_PyThreadState_SetCurrent, reading its freed thread
# state before it ever asks for the GIL: 4-9 of 21 runs without the guard; no GIL call the
# guard could park). The corpus keeps the churn and compares against those crashes;
# differential.py's acceptance check (b) leaves it out so that it counts only what is the guard's.
import os
import sys
import threading
import time
import zlib
from _common import Started, daemon, exit_now, feeder

started = Started()
DATA = bytes(range(256)) * 512


def allocator():
    started.add()
    while True:
        d = {str(i): [i] * 8 for i in range(200)}
        "".join(d)


def churner():
    started.add()
    while True:
        t = threading.Thread(target=sum, args=(range(100),))
        try:
            t.start()
        except RuntimeError:
            # 3.12+: "can't create new thread at interpreter shutdown" -- CPython's own
            # refusal, timing-dependent; stop quietly.
            return
        t.join()


def compressor():
    started.add()
    while True:
        if zlib.decompress(zlib.compress(DATA)) != DATA:
            raise RuntimeError("zlib")


def file_io():
    started.add()
    while True:
        with open(__file__, "rb") as f, open(os.devnull, "wb") as null:
            null.write(f.read(4096))
        time.sleep(0)


def reader(fd):
    started.add()
    while True:
        os.read(fd, 16)


kinds = [allocator, churner, compressor, file_io]
if sys.argv[1:] == ["no-churn"]:
    kinds[1] = compressor
for i in range(8):
    daemon(kinds[i % 4])
r, w = os.pipe()
daemon(reader, r)
started.wait(9)
feeder([w])
flags = sys.flags
print("dev_mode", getattr(flags, "dev_mode", None),
      "tracemalloc", os.environ.get("PYTHONTRACEMALLOC") or sys._xoptions.get("tracemalloc"),
      "faulthandler", "faulthandler" in sys._xoptions)
if "tracemalloc" in sys._xoptions:
    import tracemalloc
    print("tracing", tracemalloc.is_tracing(), "frames", tracemalloc.get_traceback_limit())
exit_now(15)
