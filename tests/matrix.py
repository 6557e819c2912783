#!/usr/bin/env python3
"""The interpreter test matrix: every scenario (tests/scenarios/) on every interpreter.

Each cell runs the scenario program once without the guard, asserting the baseline measured
for that CPython release -- major.minor.micro, since patch releases differ (crash by signal,
abort, hang, thread exited, thread stuck, stale thread got through); a release nobody
measured is run and reported UNMEASURED, not asserted (--strict: failed) -- and once with
LD_PRELOAD=<lib>, where the program must exit with its own status, report every late
thread parked (pyfinguard_is_parked), and the guard's exit summary must say N >= 1 parked
and all N still present at exit -- or, where this CPython ends late threads itself
(<= 3.13.7), that each was ended as CPython ends it (docs/design.md, "Ending or parking").
Ordinary programs (h-*) must give identical status and output both ways.

    /usr/bin/python3 tests/matrix.py --lib build/shim/libpyfinguard.so
    /usr/bin/python3 tests/matrix.py --scenario a,d --interp 3.11 --lib ...
    /usr/bin/python3 tests/matrix.py --table docs/behavior.md --lib ...
    /usr/bin/python3 tests/matrix.py --measure 10 --scenario e   # baseline distribution
    tools/sid-env matrix [options]    # the same inside the Debian unstable chroot (3.13-3.15)
    tools/sid-env matrix --table docs/behavior.md --table-section sid --table-title ...

Output: one `PASS`, `FAIL` (reason and output tail) or `SKIP <reason>` line per cell; the
exit status is 1 if any cell failed.
"""
import argparse
import collections
import datetime
import os
import re
import shlex
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCEN = os.path.join(REPO, "tests", "scenarios")
sys.path.insert(0, os.path.join(REPO, "tools"))
sys.path.insert(0, SCEN)
from pfgpy import build, interpreters, library, runner  # noqa: E402
from pfgpy.run import no_core  # noqa: E402
from pfgpy.runner import uniq as _uniq  # noqa: E402
from pfgpy.scenario import (MALLOC_PERTURB, STATE_WORD, built, clean_env,  # noqa: E402
                            prepare, run, version_key)
from scenarios import ARCH_BASELINES, SCENARIOS, UNCOVERED  # noqa: E402  (tests/scenarios/scenarios.py)


def expected(sc, it):
    """The allowed baseline outcomes of sc on it: its architecture's own measurement if
    scenarios.ARCH_BASELINES has one for this release, else the scenario's spans."""
    for (lo, hi), allowed in ARCH_BASELINES.get(it.arch, {}).get(sc.id, []):
        if lo <= version_key(it) <= hi:
            return set(allowed)
    return sc.expected(it)


def uncovered(sc, it):
    """Why the guard cannot park sc on it (scenarios.UNCOVERED), or None."""
    return UNCOVERED.get(it.arch, {}).get((sc.id, it.kind))


def _repro(cmd, env):
    """The failing command as a shell line someone can paste."""
    keep = ["%s=%s" % (k, env[k]) for k in ("LD_PRELOAD", "PYTHONPATH", "MALLOC_PERTURB_")
            if k in env]
    return "env " + " ".join(keep + cmd)


def _diff(b, r):
    """First difference between a baseline and a guarded run, in one line."""
    if r.timed_out and not b.timed_out:
        return "the guarded run hung (killed after %.0f s)" % r.seconds
    if b.status != r.status:
        return "status %s vs %s" % (b.status, r.status)
    return runner.first_difference((("stdout", b.stdout, r.stdout),
                                    ("stderr", b.stderr, r.stderr))) or "?"


def guarded_word(r):
    """The guarded outcome of a run check_guarded accepted: `parked` (every late thread
    parked), `ended` (every one ended with pthread_exit, as this CPython ends late threads:
    docs/design.md, "Ending or parking"), or `ended+parked`."""
    words = set("ended" if s == "gone" else s for _, s in r.states())
    return "+".join(sorted(words))


def check_guarded(sc, r):
    """None if the guarded run is right, else the reason."""
    if r.timed_out:
        return "guarded run timed out (%s)" % ("hang" if r.marked else "before its MARK")
    if r.status != sc.status:
        return "guarded run exited with %s, not the program's own %d" % (
            r.outcome(sc.status), sc.status)
    if "pyfinguard: warning" in r.stderr:
        return "guard printed a warning"
    st = r.states()
    if not st:
        return "program reported no thread states"
    # A late thread is parked, or ended the way this CPython ends late threads; no other
    # state (blocked, passed) is right, and the guard's summary must account for each.
    bad = [(n, s) for n, s in st if s not in ("parked", "gone")]
    if bad:
        return "threads neither parked nor ended: %s" % ", ".join(
            "%s=%s" % (n, STATE_WORD.get(s, s)) for n, s in bad)
    if re.search(r"^\S+: PASSED", r.stdout, re.M):
        return "a late thread got past its call"
    s = r.summary()
    if s is None:
        return "no pyfinguard exit summary line on stderr"
    n, m, ended = s
    parked_seen = sum(1 for _, x in st if x == "parked")
    gone_seen = len(st) - parked_seen
    if n + ended < 1 or m != n:
        return "exit summary says %d parked, %d still present, %d ended (want N>=1, all parked present)" % (
            n, m, ended)
    if n < parked_seen or ended < gone_seen:
        return "exit summary counts %d parked and %d ended but the program saw %d and %d" % (
            n, ended, parked_seen, gone_seen)
    return None


class Cell(runner.Sides):
    """PASS / FAIL / SKIP / GAP (listed uncovered, not parked) of a scenario on an
    interpreter, with the outcomes of its baseline and guarded runs."""

    def __init__(self, sc, it):
        runner.Sides.__init__(self, sc.id)
        self.sc, self.it = sc, it

    def head(self):
        return "%-4s %-18s %-32s" % (self.status, self.sc.id, self.it.name)


def run_cell(sc, it, lib, build_dir, timeout, slow_timeout, strict=False):
    c = Cell(sc, it)
    why = sc.applies(it)
    if why:
        c.status, c.reason = "SKIP", why
        return c
    prepared = built(c, lambda: prepare(sc, it, build_dir))
    if prepared is None:
        return c
    cmd, extra = prepared
    base_env = clean_env()
    base_env.update(extra)
    allowed = expected(sc, it)
    gap = None if sc.ordinary else uncovered(sc, it)
    # Only a run whose documented outcome is a hang pays for a timeout; every other run
    # gets a generous one, so a slow machine is not mistaken for a hang.
    base_timeout = timeout if allowed and "hang" in allowed else slow_timeout
    fails = []
    base_runs = []
    for i in range(sc.repeat):
        r = run(cmd, base_env, base_timeout, SCEN, retry=base_timeout < slow_timeout)
        base_runs.append(r)
        o = r.outcome(sc.status)
        c.baseline.append(o)
        if allowed is not None and o not in allowed:
            fails.append(("baseline run %d: %s, expected %s" % (
                i + 1, o, "|".join(sorted(allowed))), r, base_env))
            break
    if lib:
        # Every park reported (routine ones too: docs/diagnostics.md): the summary line
        # says how many threads parked and how many are still present.
        g_env = dict(base_env, LD_PRELOAD=lib, PYFINGUARD_LOG="stderr")
        for i in range(sc.repeat):
            r = run(cmd, g_env, slow_timeout, SCEN)
            if sc.ordinary:
                b = base_runs[min(i, len(base_runs) - 1)]
                o = r.outcome(sc.status)
                if (r.status, r.stdout, r.stderr) != (b.status, b.stdout, b.stderr):
                    c.guarded.append("differs")
                    fails.append(("guarded run differs from baseline: " + _diff(b, r), r, g_env))
                    c.detail = b.tail()
                    break
                c.guarded.append(o)
            else:
                why = check_guarded(sc, r)
                s = r.summary()
                c.guarded.append(guarded_word(r) if why is None else r.outcome(sc.status))
                if why is None and s:
                    c.reason = "%d parked, %d present at exit, %d ended" % s
                if why and gap:
                    # Recorded, not asserted: the guard cannot park this cell here yet.
                    gap = "%s (guarded: %s)" % (gap, why)
                    break
                if why:
                    if sc.repeat > 1:
                        why = "run %d of %d: %s" % (i + 1, sc.repeat, why)
                    fails.append((why, r, g_env))
                    break
        else:
            # for-else: no break, so no guarded run failed.
            if gap:
                fails.append(("listed uncovered on %s (%s) but every guarded run parked: "
                              "remove its entry from UNCOVERED in tests/scenarios/"
                              "scenarios.py" % (it.arch, gap), r, g_env))
                gap = None
    else:
        c.reason = "no --lib: baseline only"
    if allowed is None and not sc.ordinary:
        # A CPython release no span covers: recorded and said, not asserted.
        c.unmeasured = True
        c.reason = ("UNMEASURED baseline for CPython %s (recorded, not asserted); " %
                    it.version_str) + c.reason
        if strict:
            fails.append(("no measured baseline for CPython %s (--strict)" % it.version_str,
                          base_runs[-1], base_env))
    if fails:
        c.status = "FAIL"
        c.reason = "; ".join(f[0] for f in fails)
        c.detail = "\n".join("    cmd: %s\n%s" % (_repro(cmd, env), r.tail())
                             for _, r, env in fails) + \
            ("\n    baseline:\n" + c.detail if c.detail else "")
    elif gap and lib:
        c.status = "GAP"
        c.reason = ("not covered on %s: %s; " % (it.arch, gap)) + c.reason
    else:
        c.status = "PASS"
    return c


def select(args):
    scs = SCENARIOS
    if args.scenario:
        want = [w.strip() for w in args.scenario.split(",") if w.strip()]
        scs = [s for s in scs if s.id in want or s.letter in want]
        if not scs:
            sys.exit("no scenario matches %r (see --list)" % args.scenario)
    its = interpreters.discover(sysroot=args.sysroot)
    if args.interp:
        its = runner.select(its, args.interp)
        if not its:
            sys.exit("no interpreter matches %r (see --list)" % args.interp)
    return scs, its


def _shown_args(argv):
    """The command line as someone in the repo would type it: paths relative to the repo,
    without the options that do not change results (cache dir, parallelism)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in ("--build-dir", "--jobs"):
            skip = True
            continue
        if a.startswith(("--build-dir=", "--jobs=")):
            continue
        if os.path.isabs(a) and a.startswith(REPO + os.sep):
            a = os.path.relpath(a, REPO)
        out.append(a)
    return out


def _git_head():
    # tools/sid-env asks git on the host: the chroot has no git.
    if os.environ.get("PFG_MATRIX_HEAD"):
        return os.environ["PFG_MATRIX_HEAD"]
    try:
        r = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=10)
        head = r.stdout.decode().strip() or "?"
        # The library may have been built from a work tree with uncommitted changes.
        d = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--", "shim", "include"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=10)
        return head + (" plus uncommitted shim changes" if d.stdout.strip() else "")
    except (OSError, subprocess.TimeoutExpired):
        return "?"


_BEGIN = "<!-- tests/matrix.py --table-section %s: generated, do not edit -->"
_END = "<!-- end of section %s -->"


def _write_section(path, section, text):
    """Put text into path as the block of `section`, between its markers. The rest of the
    file (other sections, hand-written text) is kept. A file with no section markers at all
    is replaced whole (as before sections existed)."""
    begin, end = _BEGIN % section, _END % section
    block = begin + "\n" + text.rstrip("\n") + "\n" + end + "\n"
    old = ""
    if os.path.exists(path):
        with open(path) as f:
            old = f.read()
    if begin in old and end in old:
        i = old.index(begin)
        j = old.index(end, i) + len(end)
        if old[j:j + 1] == "\n":
            j += 1
        new = old[:i] + block + old[j:]
    elif "<!-- tests/matrix.py --table-section " in old:
        new = old.rstrip("\n") + "\n\n" + block
    else:
        new = block
    tmp = path + ".tmp%d" % os.getpid()
    with open(tmp, "w") as f:
        f.write(new)
    os.replace(tmp, path)


def write_table(path, cells, scs, its, lib, argv, timeout, section="host", title=None):
    by = {(c.sc.id, c.it.name): c for c in cells}
    cols = [i for i in its if any((s.id, i.name) in by and by[(s.id, i.name)].status != "SKIP"
                                  for s in scs)]
    L = []
    if section == "host":
        L.append("# %s\n" % (title or "Behavior per interpreter, without and with pyfinguard"))
    else:
        L.append("## %s\n" % (title or "Behavior per interpreter: %s" % section))
    # tools/sid-env runs this script inside its chroot and says so (PFG_MATRIX_VIA); it adds
    # --lib and --build-dir itself.
    via = os.environ.get("PFG_MATRIX_VIA")
    shown = _shown_args(argv)
    if via:
        for opt in ("--lib", "--sysroot"):     # given by the tool itself
            if opt in shown:
                k = shown.index(opt)
                del shown[k:k + 2]
        cmd = "%s %s" % (via, " ".join(shlex.quote(a) for a in shown))
    else:
        cmd = "/usr/bin/python3 tests/matrix.py %s" % " ".join(shlex.quote(a) for a in shown)
    L.append("Generated by `%s` on %s at commit %s "
             "(timeout %.0f s per run) from the scenario list tests/scenarios/scenarios.py. "
             "Do not edit: re-run the command.\n" % (
                 cmd.strip(), datetime.date.today().isoformat(), _git_head(), timeout))
    if section != "host":
        L.append("Outcomes as in the first table. Baselines are asserted per measured CPython "
                 "release (tests/matrix.py); `(unmeasured)`: a release with no measured "
                 "baseline, recorded, not asserted.\n")
    else:
        L.append("Each cell: *baseline* (no guard, `MALLOC_PERTURB_=%s`) -> *with "
                 "`LD_PRELOAD=libpyfinguard.so`*. Outcomes: `SIGSEGV`, `abort` (SIGABRT), `hang` "
                 "(killed after the timeout, after the program reached its blocking point), "
                 "`exited` (CPython pthread_exit-ed the thread, the process survived), `stuck` "
                 "(thread blocked forever in take_gil, process survived), `passed` (the stale "
                 "thread got through its call on freed memory), `parked` (pyfinguard parked every "
                 "late thread and the program exited with its own status), `ended` (pyfinguard "
                 "ended every late thread with pthread_exit, as this CPython ends late threads, "
                 "and the program exited with its own status; `ended+parked`: some of each), `ok` (ordinary "
                 "program: its own status, identical output both ways), `FAIL` (the cell failed "
                 "its assertion), `-` (not applicable). Several outcomes separated by `/` were "
                 "seen in repeated runs of a nondeterministic scenario; `(unmeasured)`: a CPython "
                 "release with no measured baseline (recorded, not asserted).\n" % MALLOC_PERTURB)
    L.append("| scenario | " + " | ".join(i.name for i in cols) + " |")
    L.append("|---|" + "---|" * len(cols))
    for s in scs:
        row = ["**%s** %s" % (s.id, s.what)]
        for i in cols:
            c = by.get((s.id, i.name))
            if c is None or c.status == "SKIP":
                row.append("-")
                continue
            b = "/".join(_uniq(c.baseline)) or "?"
            g = "/".join(_uniq(c.guarded)) or "not run"
            txt = "%s -> %s" % (b, g)
            if c.unmeasured:
                txt += " (unmeasured)"
            if c.status == "GAP":
                txt += " (not covered)"
            if c.status == "FAIL":
                txt += " **FAIL**"
            row.append(txt)
        L.append("| " + " | ".join(row) + " |")
    skips = [c for c in cells if c.status == "SKIP" and c.it in cols]
    if skips:
        L.append("\nSkipped cells:\n")
        for c in skips:
            L.append("- %s on %s: %s" % (c.sc.id, c.it.name, c.reason))
    other = [i for i in its if i not in cols]
    if other:
        L.append("\nInterpreters not in the table:\n")
        for i in other:
            L.append("- %s: %s" % (i.name, i.skip or "no applicable scenario selected"))
    notes = [s for s in scs if s.note]
    if notes:
        L.append("\nNotes:\n")
        for s in notes:
            L.append("- %s: %s" % (s.id, s.note))
    _write_section(path, section, "\n".join(L) + "\n")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", help="ids or letters, comma-separated (a, d, e-ensure-storm)")
    ap.add_argument("--interp", help="interpreter name substrings, comma-separated")
    ap.add_argument("--lib", help="libpyfinguard.so for the guarded runs (default: "
                    "build/shim/libpyfinguard.so if it exists, else baseline only)")
    ap.add_argument("--build-dir", default=None, help="cache for compiled scenario programs")
    ap.add_argument("--jobs", type=int, default=2)
    # tools/debian-env's arm64 runs (qemu-user) set longer defaults through the environment.
    ap.add_argument("--timeout", type=float,
                    default=float(os.environ.get("PFG_MATRIX_TIMEOUT") or 4.0),
                    help="seconds before a run whose documented baseline is a hang is "
                    "killed (each such cell costs this much)")
    ap.add_argument("--slow-timeout", type=float,
                    default=float(os.environ.get("PFG_MATRIX_SLOW_TIMEOUT") or 30.0),
                    help="seconds before any other run is killed and called a hang")
    ap.add_argument("--strict", action="store_true",
                    help="a cell on a CPython release with no measured baseline fails")
    ap.add_argument("--table", help="write a markdown behavior table to this file")
    ap.add_argument("--table-section", default="host", metavar="NAME",
                    help="replace only this section of the --table file (between its "
                    "markers; other sections and text are kept); default 'host'")
    ap.add_argument("--table-title", help="heading of the table section")
    ap.add_argument("--sysroot", metavar="DIR",
                    help="the interpreters of another architecture's sysroot instead of this "
                    "machine's, run under qemu-user (tools/debian-env bookworm-arm64 matrix)")
    ap.add_argument("--list", action="store_true", help="list scenarios and interpreters")
    ap.add_argument("--measure", type=int, metavar="N",
                    help="run each baseline N times and print the outcome counts (no asserts)")
    args = ap.parse_args(argv)

    scs, its = select(args)
    if args.list:
        for s in scs:
            prog = " ".join(s.sources or [s.script] + list(s.modules)) + \
                "".join(" " + a for a in s.args)
            print("%-18s %-6s %-30s %s" % (s.id, s.kind, prog, s.what))
        print()
        for i in its:
            print("%-32s %-15s %-8s %s" % (i.name, i.kind, i.version_str,
                                           ("SKIP " + i.skip) if i.skip else
                                           (i.libpython or i.executable)))
        return 0

    # Crashes are the point of half the runs: no core files.
    no_core()
    build_dir = os.path.abspath(args.build_dir) if args.build_dir else build.default_build_dir()
    # Another architecture's interpreters load the library cross-built for it
    # (tools/debian-env bookworm-arm64 build), never this machine's build/.
    arch = interpreters.sysroot_arch(args.sysroot) if args.sysroot else None
    lib = library.find(args.lib, build_dirs=("build-arm64",) if arch == "aarch64" else
                       ("build",) if arch is None else ())
    if args.lib and lib is None:
        sys.exit("--lib %s does not exist" % os.path.abspath(args.lib))

    if args.measure:
        return measure(scs, its, build_dir, args)

    t0 = time.monotonic()
    print("matrix: %d scenario(s) x %d interpreter(s), lib=%s, jobs=%d, timeout=%.1fs" % (
        len(scs), len(its), lib or "none (baseline only)", args.jobs, args.timeout), flush=True)
    cells = runner.execute(runner.timed(run_cell), [
        (s, i, lib, build_dir, args.timeout, args.slow_timeout, args.strict)
        for s in scs for i in its], args.jobs)
    print(runner.summary("matrix", cells, t0, optional=(
        "GAP (the guard does not cover them on this architecture yet: UNCOVERED in "
        "tests/scenarios/scenarios.py)",)))
    unm = [c for c in cells if c.unmeasured]
    if unm:
        vers = sorted(set(c.it.version for c in unm))
        print("matrix: WARNING: %d cell(s) ran on CPython release(s) with no measured baseline "
              "(%s): their baselines were recorded, not asserted; measure them with --measure "
              "and add a span to tests/matrix.py" % (
                  len(unm), ", ".join(".".join(map(str, v)) for v in vers)))
    if args.table:
        write_table(args.table, cells, scs, its, lib, argv, args.timeout,
                    args.table_section, args.table_title)
        print("matrix: wrote %s" % args.table)
    return runner.exit_status(cells)


def measure(scs, its, build_dir, args):
    def one(sc, it):
        why = sc.applies(it)
        if why:
            return sc, it, "SKIP " + why
        try:
            cmd, extra = prepare(sc, it, build_dir)
        except (build.Unsupported, build.BuildError) as e:
            return sc, it, "SKIP " + str(e).splitlines()[0]
        env = clean_env()
        env.update(extra)
        allowed = expected(sc, it) or set()
        t = args.timeout if "hang" in allowed else args.slow_timeout
        cnt = collections.Counter(run(cmd, env, t, SCEN, retry=t < args.slow_timeout).outcome(sc.status)
                                  for _ in range(args.measure))
        return sc, it, ", ".join("%s x%d" % kv for kv in sorted(cnt.items()))
    runner.execute(one, [(s, i) for s in scs for i in its], args.jobs,
                   show=lambda r: "%-18s %-32s %s" % (r[0].id, r[1].name, r[2]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
