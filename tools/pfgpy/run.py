"""One way to run a child with a timeout: in a session (process group) of its own, the
whole group killed with SIGKILL when the timeout expires, output captured as text.

    from pfgpy import run
    r = run.run(["python3", "-c", "..."], env=..., timeout=30)
    r.status      # the return code: negative for a signal, as subprocess gives it
    r.signal      # "SIGSEGV", ... when a signal ended it, else None
    r.stdout, r.stderr, r.timed_out, r.seconds
    r.pid         # the child's process id
    r.started, r.ended   # wall-clock time.time() around the run (reports check timestamps)
    r.describe()  # "hang", "SIGSEGV", "exit 7"
    r.crashed     # ended by a signal it was not sent on a timeout
    r.tail()      # the last lines of stdout and stderr, indented, for a FAIL line
    run.no_core() # this process and its children write no core files

The test harnesses' cells, their parallel loop and summary line are pfgpy.runner.
"""
import os
import resource
import signal as _signal
import subprocess
import time


def signame(num):
    """'SIGSEGV' for 11; 'signal 99' for a number with no name."""
    try:
        return _signal.Signals(num).name
    except ValueError:
        return "signal %d" % num


def no_core():
    """No core files from this process or the children it starts: crashes are what half
    the test runs are about, and their cores would only fill the disk."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


class Result(object):
    """What one run of a child gave."""

    def __init__(self, status, stdout, stderr, timed_out, seconds, pid=None, started=None):
        self.status, self.stdout, self.stderr = status, stdout, stderr
        self.timed_out, self.seconds = timed_out, seconds
        self.pid, self.started = pid, started
        self.ended = None if started is None else started + seconds

    @classmethod
    def of(cls, r):
        """r (a Result) as this class: the harnesses' subclasses add readers of the output."""
        new = cls(r.status, r.stdout, r.stderr, r.timed_out, r.seconds, r.pid, r.started)
        new.ended = r.ended
        return new

    @property
    def signal(self):
        return signame(-self.status) if self.status is not None and self.status < 0 else None

    @property
    def crashed(self):
        """Killed by a signal (SIGSEGV, SIGABRT, ...) that the timeout did not send."""
        return not self.timed_out and self.status is not None and self.status < 0

    def describe(self):
        if self.timed_out:
            return "hang"
        return self.signal or "exit %d" % self.status

    def tail(self, n=25, width=None):
        lines = ("--- stdout\n" + self.stdout + "--- stderr\n" + self.stderr).splitlines()
        return "\n".join("    | " + l[:width] for l in lines[-n:])


def _setup(preexec_fn, cores, default_signals):
    def child():
        if default_signals:
            # A command started in the background by a non-interactive shell inherits
            # SIGINT and SIGQUIT ignored; Python then installs no KeyboardInterrupt
            # handler, and CPython tests that use _thread.interrupt_main() fail or spin
            # forever. Children get the defaults.
            _signal.signal(_signal.SIGINT, _signal.SIG_DFL)
            _signal.signal(_signal.SIGQUIT, _signal.SIG_DFL)
        if cores is not None:
            n = resource.RLIM_INFINITY if cores else 0
            resource.setrlimit(resource.RLIMIT_CORE, (n, n))
        if preexec_fn:
            preexec_fn()
    return child if (preexec_fn or cores is not None or default_signals) else None


def run(argv, env=None, timeout=None, cwd=None, stdin=None, preexec_fn=None, cores=None,
        default_signals=False, text=True):
    """Run argv to its end or until timeout seconds have passed; raises OSError when it
    cannot be started. stdin None: inherited. cores: None inherits RLIMIT_CORE, False
    allows no core file, True an unlimited one (with the kernel's default core_pattern it
    lands in cwd). default_signals: SIGINT and SIGQUIT at their defaults in the child.
    text=False: stdout and stderr as bytes."""
    started, t0 = time.time(), time.monotonic()
    p = subprocess.Popen(argv, env=env, cwd=cwd, stdin=stdin, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, start_new_session=True,
                         preexec_fn=_setup(preexec_fn, cores, default_signals))
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
    if text:
        out, err = out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
    return Result(p.returncode, out, err, timed_out, time.monotonic() - t0, p.pid, started)
