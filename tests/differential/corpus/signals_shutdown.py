# Signals during shutdown: a daemon thread sends SIGWINCH and SIGURG to the process
# without pause and another runs short children (SIGCHLD), all with Python handlers; a
# thread's SIGTERM makes the main thread's handler raise SystemExit, and an atexit
# handler sleeps while signals keep arriving.
import atexit
import os
import signal
import subprocess
import threading
import time
from _common import Started, daemon, mark_exit

counts = {"WINCH": 0, "URG": 0, "CHLD": 0}
started = Started()


def handler(signum, frame):
    counts[signal.Signals(signum).name[3:]] += 1


def on_term(signum, frame):
    mark_exit()
    raise SystemExit(14)


for s in (signal.SIGWINCH, signal.SIGURG, signal.SIGCHLD):
    signal.signal(s, handler)
signal.signal(signal.SIGTERM, on_term)


def storm():
    pid = os.getpid()
    started.add()
    while True:
        os.kill(pid, signal.SIGWINCH)
        os.kill(pid, signal.SIGURG)
        time.sleep(0.0005)


def children():
    started.add()
    while True:
        subprocess.call(["true"])


def at_exit():
    time.sleep(0.05)
    print("atexit ran; handlers ran:", all(counts.values()), flush=True)


atexit.register(at_exit)
daemon(storm)
daemon(children)
started.wait(2)
while not all(counts.values()):
    time.sleep(0.001)
print("signals arriving")
threading.Thread(target=lambda: (time.sleep(0.05), os.kill(os.getpid(), signal.SIGTERM))).start()
while True:
    time.sleep(0.01)
