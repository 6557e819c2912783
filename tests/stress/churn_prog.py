# Thread churn, run by tests/stress/churn.py: prints one JSON line of memory figures.
#
#   python churn_prog.py N LIVE     (pfgstress from stress_ext.c on PYTHONPATH)
#
# Phases: LIVE threads alive at once, each blocked with the GIL released (a saved thread
# state: the guard's per-thread handle is in use) -> memory per live thread; then N Python
# threads, 64 at a time, each releasing and reacquiring the GIL (time.sleep(0)) and
# exiting; then N native threads doing PyGILState_Ensure / drop and retake / Release.
# Memory is read from /proc/self/status after each phase (VmRSS, VmData) so that growth
# that scales with the number of threads ever created shows up between the half-way and
# the final readings.
import gc
import json
import sys
import threading
import time

import pfgstress

N, LIVE = int(sys.argv[1]), int(sys.argv[2])


def mem():
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmData"):
                out[k] = int(v.split()[0]) * 1024
    return out


def churn(n):
    def body():
        time.sleep(0)  # PyEval_SaveThread / PyEval_RestoreThread
    done = 0
    while done < n:
        batch = [threading.Thread(target=body) for _ in range(min(64, n - done))]
        for t in batch:
            t.start()
        for t in batch:
            t.join()
        done += len(batch)


# Warm up: first thread creation allocates arenas, stacks caches etc.
churn(256)
pfgstress.native_churn(256, 64)
gc.collect()
m = {"start": mem()}

ev = threading.Event()
live = [threading.Thread(target=ev.wait) for _ in range(LIVE)]
for t in live:
    t.start()
time.sleep(0.2)
m["live"] = mem()
ev.set()
for t in live:
    t.join()
del live
gc.collect()

churn(N // 2)
gc.collect()
m["py_half"] = mem()
churn(N - N // 2)
gc.collect()
m["py_done"] = mem()
pfgstress.native_churn(N // 2, 64)
m["native_half"] = mem()
pfgstress.native_churn(N - N // 2, 64)
m["native_done"] = mem()
print(json.dumps(m), flush=True)
