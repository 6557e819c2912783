"""The scenario runner: build a scenario program for one interpreter and run it, reading
what it says by the conventions of pfgpy/c/scen.h -- `STATE <thread> <word>` for
each late thread, `MARK ...` at its blocking point (a timeout after the mark is a hang,
before it a slow machine) -- and what the guard says (pfgpy.summary).

Used by tests/matrix.py (every scenario of tests/scenarios/scenarios.py on every
interpreter), tests/subinterp/subinterp.py, and the launcher's demo.

    from pfgpy import scenario
    sc = scenario.Scenario("c-late-ensure", "embed", "...", sources=["late_ensure.c"])
    cmd, extra = scenario.prepare(sc, it, build_dir)
    r = scenario.run(cmd, scenario.clean_env(extra), timeout=30)
    r.outcome(sc.status)      # "SIGSEGV", "abort", "hang", "exited", "parked", "ok", ...
"""
import collections
import os
import re
import threading

from . import build, env as _env, run as _run, summary as _summary

# Freed memory is filled with this byte in every scenario run, so that a use-after-free
# reads garbage instead of the stale-but-intact values it would usually find.
MALLOC_PERTURB = "165"

STATE_RE = re.compile(r"^STATE (\S+) (\S+)", re.M)
# STATE words (scen.h) as outcome words (docs/behavior.md).
STATE_WORD = {"gone": "exited", "blocked": "stuck", "passed": "passed", "parked": "parked"}


class Scenario(object):
    def __init__(self, sid, kind, what, expect=(), sources=None, args=(), script=None,
                 code=None, python_flags=("-s",), modules=(), status=7, repeat=1,
                 ordinary=False, note="", execs=False):
        self.id = sid
        self.letter = sid.split("-")[0]
        self.kind = kind            # "embed": program linked to a libpython; "python": script
        #                             (or -c code); "host": dlopens libpython; "reload":
        #                             dlopens and dlcloses a module linked to libpython
        self.what = what
        self.expect = expect        # [((lo, hi), {allowed baseline outcomes}), ...]
        self.sources = sources or []     # "reload": the host's, then the module's
        self.args = list(args)
        self.script = script
        self.code = code
        self.python_flags = list(python_flags)
        self.modules = modules
        self.status = status        # the program's own exit status
        self.repeat = repeat
        self.ordinary = ordinary    # baseline and guarded runs must be identical
        self.note = note
        self.execs = execs          # starts programs of the interpreter's architecture

    def applies(self, it):
        if it.skip:
            return it.skip
        if self.kind in ("embed", "host", "reload") and not it.can_embed:
            return "no libpython to embed (%s)" % it.kind
        if self.kind == "python" and not it.can_run_programs:
            return "embedding target only"
        if self.execs and getattr(it, "runner", None):
            # Without binfmt_misc, a program started by the scenario (its own
            # sys.executable, /bin/sh) is an arm64 file the kernel cannot execute.
            return "starts %s programs itself, which this machine runs only through %s " \
                "(no binfmt_misc)" % (it.arch, os.path.basename(it.runner[0]))
        return None

    def expected(self, it):
        for (lo, hi), allowed in self.expect:
            if lo <= version_key(it) <= hi:
                return set(allowed)
        return None


def span(lo, hi=None):
    """Inclusive span of CPython releases, e.g. span("3.9", "3.13.0") or span("3.14.10")."""
    def t(v, fill):
        p = [int(x) for x in v.split(".")]
        return tuple(p + [fill] * (3 - len(p)))
    return t(lo, 0), t(hi or lo, 999)


def version_key(it):
    v = tuple(it.version[:3])
    return v + (0,) * (3 - len(v))


_build_locks = collections.defaultdict(threading.Lock)
_build_locks_mu = threading.Lock()


def prepare(sc, it, build_dir=None):
    """Build what the scenario needs on `it`; returns (cmd, extra env). Raises
    build.Unsupported, build.BuildError. The command starts with it.runner (qemu-user for
    another architecture's interpreter), which passes the environment on unchanged."""
    cmd, extra = _prepare(sc, it, build_dir)
    runner = list(getattr(it, "runner", None) or [])
    if runner:
        # An embedded libpython that is given no program name looks for "python3" on
        # PATH to find its prefix (Modules/getpath.py), and would find this machine's
        # (a pyenv build's standard library, say). /usr/bin/python3 resolves under
        # qemu's -L to the sysroot's, else to this machine's Debian /usr prefix, which
        # -L maps back into the sysroot: the target's own standard library either way.
        extra = dict(extra, PATH="/usr/bin:/bin")
    return runner + cmd, extra


def _prepare(sc, it, build_dir):
    src = build.source
    with _build_locks_mu:
        lock = _build_locks[(tuple(sc.sources) + tuple(sc.modules),
                             None if sc.kind == "host" else it.name)]
    with lock:
        if sc.kind == "embed":
            exe = build.build_embed(it, [src(s) for s in sc.sources], build_dir)
            return [exe] + sc.args, {}
        if sc.kind == "reload":
            # A host not linked to Python, and a module linked to this libpython.
            exe = build.build_host([src(sc.sources[0])], build_dir, interp=it)
            mod = build.build_module(it, [src(sc.sources[1])], build_dir)
            return [exe, mod] + sc.args, {}
        if sc.kind == "host":
            # Not linked to Python: it dlopens this interpreter's libpython by path.
            exe = build.build_host([src(s) for s in sc.sources], build_dir, interp=it)
            return [exe, it.libpython] + sc.args, {}
        paths = []
        for m in sc.modules:
            paths.append(build.build_pfgtest(it, build_dir) if m == "pfgtest"
                         else build.build_pfgbind(it, build_dir))
        extra = {"PYTHONPATH": os.pathsep.join(paths)} if paths else {}
        what = ["-c", sc.code] if sc.code is not None else [src(sc.script)]
        return [it.executable] + sc.python_flags + what + sc.args, extra


def built(cell, make):
    """make() (a build), or None with the cell marked: SKIP with the reason when the
    program cannot be built for this interpreter, FAIL when the compiler failed."""
    try:
        return make()
    except build.Unsupported as e:
        cell.status, cell.reason = "SKIP", str(e)
    except build.BuildError as e:
        cell.status, cell.reason, cell.detail = "FAIL", "build failed", str(e)
    return None


def clean_env(extra=None):
    """The environment of a scenario run without the guard: nothing of the caller's
    guard or Python settings, nor its library path; freed memory perturbed."""
    return _env.scrubbed(python="all", drop=("LD_LIBRARY_PATH",),
                         set=dict({"MALLOC_PERTURB_": MALLOC_PERTURB,
                                   "PYTHONDONTWRITEBYTECODE": "1"}, **(extra or {})))


class Run(_run.Result):
    """One run of a scenario program."""

    @property
    def marked(self):
        return re.search(r"^MARK ", self.stdout, re.M) is not None

    def states(self):
        return STATE_RE.findall(self.stdout)

    def outcome(self, status, words=STATE_WORD, none="ok", passed_line=True):
        """The outcome word of this run for a program whose own exit status is `status`:
        hang, SIGSEGV, abort, exit N, or the STATE words joined by '+' (`none` without
        STATE lines); with passed_line, a `<who>: PASSED` line adds "passed"."""
        if self.timed_out:
            return "hang" if self.marked else "timeout-before-mark"
        if self.status < 0:
            return "abort" if self.signal == "SIGABRT" else self.signal
        if self.status != status:
            return "exit %d" % self.status
        st = self.states()
        if not st:
            return none
        out = set(words.get(s, s) for _, s in st)
        if passed_line and re.search(r"^\S+: PASSED", self.stdout, re.M):
            out.add("passed")
        return "+".join(sorted(out))

    def summary(self):
        """(parked, present, ended) from the guard's last exit summary line, or None."""
        s = _summary.exit_summary(self.stderr)
        return (s.parked, s.present, s.ended) if s else None


def run(cmd, env, timeout, cwd=None, retry=False):
    r = Run.of(_run.run(cmd, env, timeout, cwd))
    if retry and r.timed_out and not r.marked:
        # A short (hang-expected) timeout, and the program never reached its blocking
        # point: a slow or loaded machine, not a hang. Once more with a longer timeout.
        r = Run.of(_run.run(cmd, env, timeout * 4, cwd))
    return r


def uniq(xs):
    out = []
    for x in xs:
        if x not in out:
            out.append(x)
    return out
