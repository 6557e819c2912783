# Shared by the corpus programs (tests/differential/corpus/*.py); Python 3.6+.
#
# Rules every program follows, so that its stdout, stderr and exit status are the same in
# every run without the guard:
#   * only the main thread (and children it waits for) writes stdout/stderr;
#   * daemon threads never print and never catch an exception they did not expect: one
#     raised at a point of shutdown they do not reach without the guard (NameError on a
#     cleared global, a closed executor, ...) is printed by threading's excepthook and
#     fails the comparison;
#   * the program exits while its daemon threads still work, with its own exit status.
# mark_exit() records when the program starts to exit (CLOCK_MONOTONIC, the clock of
# Python's time.monotonic() and of the runner) in $PFGDIFF_MARK: the runner measures
# from there to the process's end.
import os
import sys
import threading
import time


def skip(reason):
    """This program cannot run on this interpreter: the runner prints the reason."""
    sys.stdout.write("SKIP: %s\n" % reason)
    sys.stdout.flush()
    os._exit(77)


def mark_exit():
    path = os.environ.get("PFGDIFF_MARK")
    if path:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.write(fd, ("%.6f\n" % time.monotonic()).encode())
        os.close(fd)


def exit_now(status):
    """Print nothing more; mark and start the interpreter's normal exit."""
    sys.stdout.flush()
    mark_exit()
    sys.exit(status)


class Started(object):
    """Counts threads that reached their working loop; wait() blocks the main thread
    until n have (60 s cap, so a broken program fails instead of hanging)."""

    def __init__(self):
        self.cond = threading.Condition()
        self.n = 0

    def add(self):
        with self.cond:
            self.n += 1
            self.cond.notify_all()

    def wait(self, n, timeout=60.0):
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.n < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError("only %d of %d threads started" % (self.n, n))
                self.cond.wait(left)


def daemon(target, *args, **kw):
    t = threading.Thread(target=target, args=args, kwargs=kw)
    t.daemon = True
    t.start()
    return t


def feeder(fds, period=0.001):
    """A daemon thread that writes one byte to each pipe every `period` seconds, so
    readers blocked in os.read keep waking (also during finalization)."""
    def run():
        while True:
            for fd in fds:
                os.write(fd, b"x")
            time.sleep(period)
    return daemon(run)
