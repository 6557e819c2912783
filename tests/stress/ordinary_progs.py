# Ordinary shutdowns, run by tests/stress/ordinary.py: nothing here but "daemon-exit"
# reaches for the GIL after finalization, so the guard must park nothing and print
# nothing; "daemon-exit" is parked, silently.
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

if name == "daemon-exit":
    # CPython's test_4_daemon_threads, shortened: daemon threads doing I/O and tiny sleeps,
    # and a few running bytecode, when the program exits. The guard parks those that come back after CPython's point
    # of no return -- routine parks: counted, not printed unless PYFINGUARD_LOG is set
    # (docs/diagnostics.md), so stderr stays exactly as without the guard.
    started = set()

    def io_loop():
        while True:
            with open(__file__, "rb") as f, open(os.devnull, "wb") as null:
                null.write(f.read(200))
            time.sleep(0.0005)
            started.add(threading.current_thread())
    def spin():
        # Runs bytecode: at exit it waits for the GIL inside take_gil, so some thread is
        # always caught however fast finalization is.
        started.add(threading.current_thread())
        while True:
            sum(range(100))
    for i in range(20):
        threading.Thread(target=spin if i % 4 == 0 else io_loop, daemon=True).start()
    while len(started) < 20:
        time.sleep(0.001)
    print("daemons running", flush=True)
    sys.exit(9)

sys.exit("unknown program " + name)
