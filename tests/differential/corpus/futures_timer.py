# concurrent.futures and threading.Timer: a ThreadPoolExecutor whose last tasks are
# still running at exit (the interpreter waits for them), a daemon thread driving its
# own executor, a Timer that fires while the interpreter joins it, and a daemon Timer
# still pending.
import concurrent.futures
import threading
import time
from _common import Started, daemon, exit_now

started = Started()
pool = concurrent.futures.ThreadPoolExecutor(max_workers=4)
print("squares", list(pool.map(lambda x: x * x, range(10))))
for _ in range(8):
    pool.submit(time.sleep, 0.05)       # still running when the program exits


def driver():
    ex = concurrent.futures.ThreadPoolExecutor(max_workers=2)
    started.add()
    while True:
        try:
            futs = [ex.submit(sum, range(1000)) for _ in range(4)]
        except RuntimeError:
            # 3.9+: "cannot schedule new futures after interpreter shutdown", once
            # threading's shutdown ran the executors' exit hook. CPython's own
            # behavior; the thread just stops submitting (quietly, so that stderr does
            # not depend on the timing).
            return
        for f in futs:
            if f.result() != 499500:
                raise RuntimeError("sum")


daemon(driver)
started.wait(1)
fired = threading.Timer(0.1, lambda: print("timer fired", flush=True))
fired.start()                           # non-daemon: joined at exit, prints then
pending = threading.Timer(60, lambda: print("never", flush=True))
pending.daemon = True
pending.start()
exit_now(10)
