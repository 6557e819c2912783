# Scenario h: an ordinary program that must behave identically with and without the guard:
# non-daemon threads still running when the main thread ends (Python joins them at
# shutdown), an atexit handler that starts and joins a thread, subprocesses (which inherit
# LD_PRELOAD), and a nonzero exit status of its own (5).
import atexit
import subprocess
import sys
import threading
import time

go = threading.Event()


def worker(i):
    go.wait()
    time.sleep(0.05 * (i + 1))
    print("worker %d: done after main returned" % i, flush=True)


for i in range(3):
    threading.Thread(target=worker, args=(i,), name="worker%d" % i).start()


def at_exit():
    box = []
    t = threading.Thread(target=lambda: box.append(sum(range(1000))), name="atexit-helper")
    try:
        t.start()
    except RuntimeError as e:
        # 3.12+ refuse new threads once shutdown has begun; a fact of CPython, the same
        # with and without the guard.
        print("atexit: thread refused:", e, flush=True)
        return
    t.join()
    print("atexit: helper thread computed", box, flush=True)


atexit.register(at_exit)

r = subprocess.run([sys.executable, "-c", "import sys; print('child: ok'); sys.exit(3)"],
                   stdout=subprocess.PIPE)
print("main: subprocess status %d, output %r" % (r.returncode, r.stdout.decode().strip()),
      flush=True)
r = subprocess.run(["sh", "-c", "echo shell child; exit 4"], stdout=subprocess.PIPE)
print("main: shell status %d, output %r" % (r.returncode, r.stdout.decode().strip()), flush=True)
print("main: returning, exit 5", flush=True)
go.set()
sys.exit(5)
