# Ordinary shutdowns, run by tests/stress/ordinary.py: nothing here reaches for the GIL
# after finalization, so the guard must park nothing and print nothing.
#   python ordinary_progs.py NAME
import atexit
import os
import subprocess
import sys
import threading
import time

name = sys.argv[1]

if name == "nondaemon-joined":
    # CPython's test_join_nondaemon_on_shutdown: the thread wakes while Py_FinalizeEx
    # waits for it, prints, and ends normally.
    def child():
        time.sleep(0.3)
        print("woke up", flush=True)
    threading.Thread(target=child).start()
    raise SystemExit(3)

if name == "nondaemon-many":
    def child(i):
        time.sleep(0.01 * i)
        sum(range(10000))
    for i in range(20):
        threading.Thread(target=child, args=(i,)).start()
    sys.exit(4)

if name == "atexit-thread":
    def at_exit():
        t = threading.Thread(target=lambda: print("atexit thread ran", flush=True))
        t.start()
        t.join()
    atexit.register(at_exit)
    sys.exit(5)

if name == "daemon-finished":
    t = threading.Thread(target=lambda: time.sleep(0.05), daemon=True)
    t.start()
    t.join()
    sys.exit(6)

if name == "subprocess":
    r = subprocess.run([sys.executable, "-c", "print('child')"], stdout=subprocess.PIPE)
    print(r.stdout.decode().strip(), r.returncode, flush=True)
    sys.exit(7)

if name == "fork-exit":
    pid = os.fork()
    if pid == 0:
        threading.Thread(target=lambda: time.sleep(0.1)).start()
        sys.exit(0)
    _, st = os.waitpid(pid, 0)
    print("child status", st >> 8, flush=True)
    sys.exit(8)

sys.exit("unknown program " + name)
