"""One way to run a child with a timeout: in a session (process group) of its own, the
whole group killed with SIGKILL when the timeout expires, output captured as text.

    from pfgpy import run
    r = run.run(["python3", "-c", "..."], env=..., timeout=30)
    r.status      # the return code: negative for a signal, as subprocess gives it
    r.signal      # "SIGSEGV", ... when a signal ended it, else None
    r.stdout, r.stderr, r.timed_out, r.seconds
    r.pid         # the child's process id
    r.describe()  # "hang", "SIGSEGV", "exit 7"
"""
import os
import signal as _signal
import subprocess
import time


def signame(num):
    """'SIGSEGV' for 11; 'signal 99' for a number with no name."""
    try:
        return _signal.Signals(num).name
    except ValueError:
        return "signal %d" % num


class Result(object):
    def __init__(self, status, stdout, stderr, timed_out, seconds):
        self.status, self.stdout, self.stderr = status, stdout, stderr
        self.timed_out, self.seconds = timed_out, seconds

    @property
    def signal(self):
        return signame(-self.status) if self.status is not None and self.status < 0 else None

    def describe(self):
        if self.timed_out:
            return "hang"
        return self.signal or "exit %d" % self.status


def run(argv, env=None, timeout=None, cwd=None, stdin=None, preexec_fn=None):
    """Run argv to its end or until timeout seconds have passed; raises OSError when it
    cannot be started. stdin None: inherited."""
    t0 = time.monotonic()
    p = subprocess.Popen(argv, env=env, cwd=cwd, stdin=stdin, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, start_new_session=True, preexec_fn=preexec_fn)
    try:
        out, err = p.communicate(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        # Its own session: the child and anything it started, nothing else.
        try:
            os.killpg(p.pid, _signal.SIGKILL)
        except OSError:
            pass
        out, err = p.communicate()
        timed_out = True
    r = Result(p.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"),
               timed_out, time.monotonic() - t0)
    r.pid = p.pid
    return r
