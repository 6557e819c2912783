"""What the launcher's doctor and demo share: the live scenario (a native thread's first
PyGILState_Ensure after finalization, pfgtest.late_ensure or tests' c-late-ensure program
late_ensure.c), one run of a program without or with the guard, and its outcome.

A run goes through the scenario runner (pfgpy.scenario), in the environment of
`clean_env`: the launcher's user asked for the guard's defaults, so PYFINGUARD_PATCH and
other preloaded libraries are kept -- doctor and demo then show what the guard does with
the user's choice (PYFINGUARD_PATCH=off: interposition only).
"""
import os
import tempfile

from . import env as _env, scenario, summary
from .run import signame

# The launcher's exit statuses (tools/pyfinguard lists them all).
EXIT_OK = 0
EXIT_FAIL = 1
EXIT_USAGE = 2
EXIT_CANNOT_CHECK = 4

LIVE_SCENARIO = ("pfgtest.late_ensure: a native thread calls PyGILState_Ensure "
                 "after finalization")
LIVE_CODE = "import pfgtest; pfgtest.late_ensure()"
# late_ensure.c, the same scenario in an embedding program, exits with 7.
EMBED_STATUS = 7

# The two forms of the live scenario, for the scenario runner.
LATE_ENSURE = scenario.Scenario("late-ensure", "python", LIVE_SCENARIO, code=LIVE_CODE,
                                python_flags=(), modules=("pfgtest",), status=0)
LATE_ENSURE_EMBED = scenario.Scenario("c-late-ensure", "embed", LIVE_SCENARIO,
                                      sources=["late_ensure.c"], status=EMBED_STATUS)


def die(code, msg):
    import sys
    sys.stderr.write("pyfinguard: error: %s\n" % msg)
    return code


def clean_env(lib=None, extra=()):
    """The environment for a run: no inherited guard or Python settings, the guard
    preloaded when lib is given, other preloads kept, PYFINGUARD_PATCH kept."""
    return _env.scrubbed(keep=("PYFINGUARD_PATCH",), other_preloads=True, preload=lib,
                         set=dict(extra))


class Outcome(object):
    """What one run of a scenario did."""

    def __init__(self, status=None, timed_out=False, parked=0, stderr="", error=None,
                 seconds=0.0):
        self.stdout = ""
        self.status = status
        self.timed_out = timed_out
        self.parked = parked
        self.ended = 0      # ended with pthread_exit, as this CPython ends late threads
        self.stderr = stderr
        self.error = error
        self.seconds = seconds
        self.parked_in = []  # the API named by each report ("PyEval_RestoreThread", "pause", ...)

    @property
    def stopped(self):
        """Late threads the guard stopped: parked, or ended as CPython ends them."""
        return self.parked + self.ended

    @property
    def clean(self):
        return self.status == 0 and not self.timed_out and self.error is None

    @property
    def crashed(self):
        return self.status is not None and self.status != 0

    def text(self):
        if self.error:
            return "error: " + self.error
        if self.timed_out:
            return "hang (killed after %.0f s)" % self.seconds
        if self.status < 0:
            s = "killed by " + signame(-self.status)
        else:
            s = "exit %d" % self.status
        if self.parked:
            s += ", %d thread%s parked" % (self.parked, "" if self.parked == 1 else "s")
        if self.ended:
            s += ", %d thread%s ended (pthread_exit)" % (self.ended, "" if self.ended == 1 else "s")
        return s


def run(argv, lib, extra=(), timeout=30):
    """Run argv in a clean environment plus extra, with the guard when lib is given (every
    park reported to a temporary log, read back)."""
    logfd, logpath = tempfile.mkstemp(prefix="pyfinguard-log-")
    os.close(logfd)
    extra = list(extra) + ([("PYFINGUARD_LOG", logpath)] if lib else [])
    try:
        r = scenario.run(argv, clean_env(lib, extra), timeout)
    except OSError as e:
        os.unlink(logpath)
        return Outcome(error=str(e))
    o = Outcome(status=r.status, timed_out=r.timed_out, stderr=r.stderr, seconds=r.seconds)
    o.stdout = r.stdout
    with open(logpath, errors="replace") as f:
        parks = summary.parks(f.read())
    os.unlink(logpath)
    o.parked_in = [p.api for p in parks]
    # The exit summary counts them even when a report could not be written.
    sums = summary.exit_summaries(o.stderr)
    o.parked = max([len([p for p in parks if not p.ended])] + [s.parked for s in sums])
    o.ended = max([len([p for p in parks if p.ended])] + [s.ended for s in sums])
    return o


def prepare(it, build_dir=None):
    """(argv, extra env, expected status) of the live scenario on `it`: the Python form
    where it runs programs, the embedding program for a libpython without an executable.
    Raises build.Unsupported (with the reason) when neither applies."""
    from . import build
    if it.can_run_programs:
        sc = LATE_ENSURE
    elif it.can_embed:
        sc = LATE_ENSURE_EMBED
    else:
        raise build.Unsupported(it.skip or "cannot run programs or embed")
    argv, extra = scenario.prepare(sc, it, build_dir)
    return argv, sorted(extra.items()), sc.status
