#!/usr/bin/env python3
"""Sub-interpreter cells: tests/subinterp/subinterp.c on every interpreter,
each cell N times without and N times with the guard.

A cell is (when, kind, gil), named <when>-<kind>[-own]: `end` = Py_EndInterpreter of the
sub-interpreter while its thread lives, then wake the thread; `fin` = Py_FinalizeEx of the
main interpreter while the sub-interpreter and its thread live, then wake it; `endfin` =
both, then wake; `atexit` = fin, the thread woken by a main atexit callback (before the
point of no return). Kinds and GILs: see subinterp.c and README.md (`own`:
Py_NewInterpreterFromConfig with PyInterpreterConfig_OWN_GIL, 3.12+ only).

Without the guard every run must show the baseline measured for that CPython release
(BASELINE below; a release no span covers is reported UNMEASURED on its line and in the
summary, never silently passed). With LD_PRELOAD=<lib> and PYFINGUARD_LOG=stderr the cell
must meet its contract (GUARDED / GUARDED_BY_RELEASE below):
  same     CPython's own behaviour up to and including its point of no return: identical
           status, stdout and stderr (thread ids and addresses normalized) -- a clean run,
           or CPython's own Py_FatalError, which the guard must not change
  same-hang  CPython's own hang (3.13 fin-nondaemon), identical but for the guard's report
           of the woken thread, which it parks where CPython would have exited it
  parked   no crash, no hang, the program's own status 7, every late thread reported
           `STATE ... parked`, a "pyfinguard: parked thread" report, exit summary N >= 1
  gap      a KNOWN GAP: the guard does not meet the contract today (it does not track
           sub-interpreters). The guarded outcome must be one of the listed ones; it is
           printed as `XFAIL <cell> ... KNOWN GAP G<n>` (the mechanism in the closing
           summary and in README.md), and a run that does meet the
           contract is printed as XPASS and fails the test, so the table gets updated.

    /usr/bin/python3 tests/subinterp/subinterp.py --lib build/shim/libpyfinguard.so
    /usr/bin/python3 tests/subinterp/subinterp.py --lib ... --runs 5 --interp 3.12 --cell end-zap
    /usr/bin/python3 tests/subinterp/subinterp.py --lib ... --measure 5   # outcome counts only

Output: one PASS / XFAIL / XPASS / FAIL / SKIP line per cell and interpreter; status 1 if
any FAIL or XPASS.
"""
import argparse
import collections
import os
import re
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tools"))
from pfgpy import build, interpreters, library, runner, scenario  # noqa: E402
from pfgpy.run import no_core  # noqa: E402
from pfgpy.scenario import span  # noqa: E402

MALLOC_PERTURB = scenario.MALLOC_PERTURB
STATUS = 7


# Measured CPython releases: pyenv 3.6.15 ... 3.13.0 and Debian 12's libpython3.11 (3.11.2).
# A span covers the measured releases inside it and nothing is assumed beyond.
ALL = span("3.6", "3.13.0")
V36 = span("3.6")
V37_312 = span("3.7", "3.12")
V37_38 = span("3.7", "3.8")
V39_313 = span("3.9", "3.13.0")
V312_313 = span("3.12", "3.13.0")
V313 = span("3.13.0")

WHEN = {
    "end": "Py_EndInterpreter(sub) while its thread lives, then wake the thread",
    "fin": "Py_FinalizeEx of main while the sub-interpreter and its thread live, then wake",
    "endfin": "Py_EndInterpreter(sub), Py_FinalizeEx, then wake (zap and late only)",
    "atexit": "as fin, but a main-interpreter atexit callback wakes the thread and waits "
              "for it (before the point of no return; daemon, nondaemon, native)",
}
KIND = {
    "daemon": "Python daemon thread of the sub-interpreter blocked in os.read",
    "sleep": "Python daemon thread of the sub-interpreter in time.sleep",
    "nondaemon": "Python non-daemon thread in os.read, woken 500 ms after the call starts",
    "native": "native thread that saved a sub-interpreter thread state (PyEval_SaveThread)",
    "zap": "as native; the embedder deletes that saved state before the call (mod_wsgi)",
    "late": "native thread whose first PyThreadState_New(sub) + PyEval_RestoreThread is late",
}
GIL = {"shared": "Py_NewInterpreter", "own": "Py_NewInterpreterFromConfig, OWN_GIL (3.12+)"}

# Baseline outcomes (no guard, MALLOC_PERTURB_=165), measured with --measure 5 on this
# machine; key (when, kind, gil) -> [(span, allowed outcomes)]. Outcome words: ok (status 7,
# the thread finished normally), abort (SIGABRT: CPython's Py_FatalError, or glibc's heap
# check), SIGSEGV, hang (killed after the timeout, after the MARK line), exited (CPython
# pthread_exit-ed the late thread), stuck (thread blocked forever, process exits 7),
# passed (the late thread got through its call into a finished interpreter).
FATAL_LAST = "Py_EndInterpreter: not the last thread"
FATAL_REMAIN = "PyInterpreterState_Delete: remaining subinterpreters"


def _b(*pairs):
    return list(pairs)


BASELINE = {}
GUARDED = {}
# CPython's "not the last thread": Py_EndInterpreter finds a thread state besides the
# caller's after joining the non-daemon threads (every version, both GIL kinds). Before
# any point of no return: the guard must not change it.
for k in ("daemon", "sleep", "native"):
    for g in ("shared", "own"):
        BASELINE[("end", k, g)] = _b((ALL, {"abort"}))
        GUARDED[("end", k, g)] = ("same", FATAL_LAST)
# threading._shutdown() of the sub-interpreter joins the non-daemon thread, which the
# waker releases; then Py_EndInterpreter finishes: an ordinary program.
for g in ("shared", "own"):
    BASELINE[("end", "nondaemon", g)] = _b((ALL, {"ok"}))
    GUARDED[("end", "nondaemon", g)] = ("same", None)
# A thread state the embedder deleted (zap) before Py_EndInterpreter, restored by its
# worker after Py_EndInterpreter while the main runtime runs: 3.6-3.8 take the (runtime-
# wide) GIL with the freed state and return (passed: a silent use after free), 3.9+ SIGSEGV
# in take_gil reading the GIL through the freed state's interpreter. The guard recorded
# the PyThreadState_Delete after the worker's save (shim/lifecycle.h) and parks the
# restore (once gap G1).
# late: the worker's first call is PyThreadState_New(<ended interpreter>), which CPython
# builds on the freed PyInterpreterState; the guard recorded the Py_EndInterpreter and
# parks it (once gap G2).
for g in ("shared", "own"):
    BASELINE[("end", "zap", g)] = _b((span("3.6", "3.8"), {"passed"}),
                                     (V39_313, {"SIGSEGV"}))
    GUARDED[("end", "zap", g)] = ("parked",)
    # 3.6 SIGSEGV in PyThreadState_New; 3.7/3.8 get through it on the freed (perturbed)
    # interpreter, block in take_gil, and glibc aborts at the main Py_FinalizeEx
    # ("free(): corrupted unsorted chunks"); 3.9+ SIGSEGV in PyThreadState_New.
    BASELINE[("end", "late", g)] = _b((V36, {"SIGSEGV"}), (V37_38, {"abort"}),
                                      (V39_313, {"SIGSEGV"}))
    GUARDED[("end", "late", g)] = ("parked",)

# Py_FinalizeEx with a live sub-interpreter. 3.6: nothing checks; the late thread blocks
# forever (stuck), with the guard it parks. 3.7-3.12: PyInterpreterState_Delete(main)
# aborts with "remaining subinterpreters", after the point of no return and before the
# thread is woken: CPython's own refusal, which the guard must leave alone. 3.13:
# finalize_subinterpreters() ends the sub-interpreter with Py_EndInterpreter, which stops
# at "not the last thread" for a thread state still listed, and for the non-daemon thread
# joins it in threading._shutdown() while CPython (past its point of no return) exits the
# woken thread in take_gil: the join never ends (hang, with the guard too: the thread is
# parked instead of exited, the Python-level join is not a pthread_join).
for g in ("shared", "own"):
    for k in ("daemon", "sleep", "native", "nondaemon", "zap", "late"):
        b = [(V36, {"stuck"}), (V37_312, {"abort"})]
        if k in ("daemon", "sleep", "native"):
            b.append((V313, {"abort"}))
        elif k == "nondaemon":
            b.append((V313, {"hang"}))
        elif k == "zap":
            b.append((V313, {"exited"}))      # no thread state left: ended, then exited
        else:
            b.append((V313, {"SIGSEGV"}))     # PyThreadState_New on the ended interpreter
        BASELINE[("fin", k, g)] = b
# The guarded contract differs by release for fin: parked where CPython lets the process
# get to the late thread, CPython's own fatal error or hang otherwise.
GUARDED_BY_RELEASE = {}
for g in ("shared", "own"):
    for k in ("daemon", "sleep", "native", "nondaemon", "zap", "late"):
        c = [(V36, ("parked",)), (V37_312, ("same", FATAL_REMAIN))]
        if k in ("daemon", "sleep", "native"):
            c.append((V313, ("same", FATAL_LAST)))
        elif k == "nondaemon":
            c.append((V313, ("same-hang",)))
        elif k == "zap":
            c.append((V313, ("parked",)))
        else:
            c.append((V313, ("parked",)))     # PyThreadState_New past the point of no return
        GUARDED_BY_RELEASE[("fin", k, g)] = c

# A main-interpreter atexit callback wakes the sub-interpreter's thread and waits until it
# ended (the native worker deletes its own state): before the point of no return, an
# ordinary program -- but for 3.7-3.12's "remaining subinterpreters", which comes later.
for g in ("shared", "own"):
    for k in ("daemon", "nondaemon", "native"):
        BASELINE[("atexit", k, g)] = _b((V36, {"ok"}), (V37_312, {"abort"}), (V313, {"ok"}))
        GUARDED_BY_RELEASE[("atexit", k, g)] = [
            (V36, ("same", None)), (V37_312, ("same", FATAL_REMAIN)), (V313, ("same", None))]

# Py_EndInterpreter, then Py_FinalizeEx, then wake (an embedder that ends its
# sub-interpreters first). zap: the deleted state's restore comes after the main
# finalization: 3.6-3.8 stuck, 3.9+ exited (CPython's own late-thread handling); the
# guard parks it (rule 5: FINALIZED). late: PyThreadState_New on the ended interpreter.
for g in ("shared", "own"):
    BASELINE[("endfin", "zap", g)] = _b((span("3.6", "3.8"), {"stuck"}),
                                        (V39_313, {"exited"}))
    GUARDED[("endfin", "zap", g)] = ("parked",)
    # 3.9.18 aborted in 3 of 3 runs (glibc heap check), the others SIGSEGV: what the freed
    # interpreter's memory holds decides; both are the crash.
    BASELINE[("endfin", "late", g)] = _b((ALL, {"SIGSEGV", "abort"}))
    GUARDED[("endfin", "late", g)] = ("parked",)


# Debian unstable's releases in the tools/sid-env chroot (libpython3.13 3.13.18,
# libpython3.14 3.14.10, libpython3.15 3.15.2), measured there with --measure 2 on
# 2026-12-01 (every cell the same outcome in 2 of 2 runs per side). 3.13.18 has the
# gh-87135 backport only in part: fin-zap and endfin-zap are stuck, not exited. 3.14+:
# Py_EndInterpreter no longer stops at "not the last thread" -- the sub-interpreter's
# daemon and native threads are left hanging (stuck, with the guard too: CPython hangs
# them while the main runtime runs, which is not the guard's business), and at
# Py_FinalizeEx they hang (stuck) where the guard parks them.
S313 = span("3.13.18")
S314_315 = span("3.14.10", "3.15.2")
SID = span("3.13.18", "3.15.2")
PARKED = ("parked",)
SID_CELLS = {
    # kind: {when: [(span, baseline outcomes, guarded contract)]}
    "daemon": {"end": [(S313, {"abort"}, ("same", FATAL_LAST)), (S314_315, {"stuck"}, ("same", None))],
               "fin": [(S313, {"abort"}, ("same", FATAL_LAST)), (S314_315, {"stuck"}, PARKED)],
               "atexit": [(SID, {"ok"}, ("same", None))]},
    "nondaemon": {"end": [(SID, {"ok"}, ("same", None))],
                  "fin": [(S313, {"hang"}, ("same-hang",)), (S314_315, {"ok"}, ("same", None))],
                  "atexit": [(SID, {"ok"}, ("same", None))]},
    "zap": {"end": [(SID, {"SIGSEGV"}, PARKED)],
            "fin": [(S313, {"stuck"}, PARKED), (S314_315, {"SIGSEGV"}, PARKED)],
            "endfin": [(S313, {"stuck"}, PARKED), (span("3.14.10"), {"abort"}, PARKED),
                       (span("3.15.2"), {"SIGSEGV"}, PARKED)]},
    "late": {"end": [(SID, {"SIGSEGV"}, PARKED)], "fin": [(SID, {"SIGSEGV"}, PARKED)],
             "endfin": [(SID, {"SIGSEGV"}, PARKED)]},
}
SID_CELLS["sleep"] = {w: v for w, v in SID_CELLS["daemon"].items() if w != "atexit"}
SID_CELLS["native"] = SID_CELLS["daemon"]
for g in ("shared", "own"):
    for k, whens in SID_CELLS.items():
        for w, rows in whens.items():
            cell = (w, k, g)
            BASELINE.setdefault(cell, []).extend((sp, b) for sp, b, _ in rows)
            if cell not in GUARDED_BY_RELEASE:  # one contract for every release so far
                GUARDED_BY_RELEASE[cell] = [(span("3.6", "3.13.0"), GUARDED[cell])]
            GUARDED_BY_RELEASE[cell].extend((sp, c) for sp, _, c in rows)


class Run(scenario.Run):
    def fatal(self):
        m = re.search(r"^Fatal Python error: (.*)$", self.stderr, re.M)
        return m.group(1).strip() if m else None

    def outcome(self):
        return scenario.Run.outcome(self, STATUS, dict(scenario.STATE_WORD, done="ok"),
                                    none="no-state", passed_line=False)


def normalize(text):
    text = re.sub(r"0x[0-9a-fA-F]+", "0x?", text)
    text = re.sub(r"\bthread \d+", "thread N", text)
    return text


clean_env = scenario.clean_env


def run(cmd, env, timeout):
    # A run that never reached its blocking point is retried with a longer timeout.
    return Run.of(scenario.run(cmd, env, timeout, HERE, retry=True))


def lookup(table, key, it):
    for (lo, hi), allowed in table.get(key, []):
        if lo <= scenario.version_key(it) <= hi:
            return set(allowed)
    return None


def cells_for(it):
    out = []
    for w in WHEN:
        for k in KIND:
            if w == "endfin" and k not in ("zap", "late"):
                continue
            if w == "atexit" and k in ("zap", "late", "sleep"):
                continue
            for g in GIL:
                if g == "own" and scenario.version_key(it) < (3, 12, 0):
                    continue
                out.append((w, k, g))
    return out


def cell_name(c):
    return "%s-%s%s" % (c[0], c[1], "-own" if c[2] == "own" else "")


_build_locks = collections.defaultdict(threading.Lock)


def executable(it, build_dir):
    with _build_locks[it.name]:
        return build.build_embed(it, [os.path.join(HERE, "subinterp.c")], build_dir)


def contract_for(cell, it):
    if cell in GUARDED_BY_RELEASE:
        for (lo, hi), c in GUARDED_BY_RELEASE[cell]:
            if lo <= scenario.version_key(it) <= hi:
                return c
        return None
    return GUARDED.get(cell)


def check_guarded(contract, base, r):
    """None if the guarded run r meets the cell's contract, else why not."""
    kind = contract[0]
    if kind == "same-hang":
        # CPython's own hang (3.13: a join in threading._shutdown() of a thread CPython
        # exits in take_gil); with the guard the thread is parked instead of exited, which
        # its report says (PYFINGUARD_LOG=stderr), and everything else is identical.
        if not (r.timed_out and r.marked):
            return "not the baseline's hang: %s" % r.outcome()
        if normalize(r.stdout) != normalize(base.stdout):
            return "stdout differs"
        extra = [l for l in r.stderr.splitlines() if not l.startswith("pyfinguard: ")]
        if extra != base.stderr.splitlines():
            return "stderr differs beyond the guard's park reports"
        if not re.search(r"^pyfinguard: (parked|ended) thread", r.stderr, re.M):
            return "no park or end report for the woken thread"
        return None
    if kind == "same":
        if r.timed_out and not base.timed_out:
            return "the guarded run hung"
        if r.status != base.status:
            return "status %s, baseline %s" % (r.outcome(), base.outcome())
        if contract[1] and contract[1] not in (r.fatal() or ""):
            return "no 'Fatal Python error: %s'" % contract[1]
        return runner.first_difference(
            [(what, normalize(x), normalize(y)) for what, x, y in
             (("stdout", base.stdout, r.stdout), ("stderr", base.stderr, r.stderr))], 90)
    # parked (and the test of a gap: would it be parked?)
    if r.timed_out:
        return "hang" if r.marked else "timed out before its MARK"
    if r.status != STATUS:
        return "status: %s" % r.outcome()
    if "pyfinguard: warning" in r.stderr:
        return "the guard printed a warning"
    # Parked, or ended as this CPython ends a late thread (docs/design.md, "Ending or
    # parking"): its report and the summary say which.
    st = re.findall(r"^STATE (\S+) (\S+)", r.stdout, re.M)
    if not st or any(s not in ("parked", "gone") for _, s in st):
        return "threads: %s" % (", ".join("%s=%s" % x for x in st) or "no STATE line")
    if not re.search(r"^pyfinguard: (parked|ended) thread", r.stderr, re.M):
        return "no 'pyfinguard: parked thread' or 'ended thread' report"
    s = r.summary()
    if s is None or s[0] + s[2] < 1 or s[1] != s[0]:
        return "exit summary %s" % (s,)
    if any(x == "gone" for _, x in st) and s[2] < 1:
        return "a thread is gone but the summary counts none ended: %s" % (s,)
    return None


class Result(runner.Sides):
    """PASS / XFAIL / XPASS / FAIL / SKIP of a cell on an interpreter."""
    detail_on = ("FAIL", "XPASS")

    def __init__(self, it, cell):
        runner.Sides.__init__(self, cell_name(cell))
        self.it, self.cell = it, cell

    def head(self):
        return "%-5s %-22s %-22s %4.1fs" % (self.status, self.name, self.it.name, self.secs)


@runner.timed
def run_cell(it, cell, lib, build_dir, runs, timeout, strict=False):
    res = _run_cell(Result(it, cell), it, cell, lib, build_dir, runs, timeout)
    if res.unmeasured and strict and res.status != "SKIP":
        res.status = "FAIL"
    return res


def _run_cell(res, it, cell, lib, build_dir, runs, timeout):
    exe = scenario.built(res, lambda: executable(it, build_dir))
    if exe is None:
        return res
    cmd = [exe] + list(cell)
    env = clean_env()
    allowed = lookup(BASELINE, cell, it)
    contract = contract_for(cell, it)
    # Only a run whose measured outcome is a hang pays for the short timeout; any other
    # gets a generous one, so that a loaded machine is not mistaken for a hang.
    timeout = timeout if allowed and "hang" in allowed else max(timeout, 30.0)
    fails = []
    bruns = []
    for i in range(runs):
        r = run(cmd, env, timeout)
        bruns.append(r)
        o = r.outcome()
        res.baseline.append(o)
        if allowed is not None and o not in allowed:
            fails.append("baseline run %d: %s, measured %s" % (i + 1, o, "|".join(sorted(allowed))))
            res.detail += "    cmd: env MALLOC_PERTURB_=%s %s\n%s\n" % (
                MALLOC_PERTURB, " ".join(cmd), r.tail())
            break
    if allowed is None:
        res.unmeasured = True
    gap_ok = gap_met = 0
    if lib and contract:
        genv = dict(env, LD_PRELOAD=lib, PYFINGUARD_LOG="stderr")
        for i in range(runs):
            r = run(cmd, genv, timeout)
            base = bruns[min(i, len(bruns) - 1)]
            if contract[0] == "gap":
                o = r.outcome()
                res.guarded.append(o)
                if check_guarded(("parked",), base, r) is None:
                    gap_met += 1
                elif o in contract[1]:
                    gap_ok += 1
                else:
                    fails.append("guarded run %d (known gap): %s, expected %s" % (
                        i + 1, o, "|".join(sorted(contract[1]))))
                    res.detail += "    cmd: env LD_PRELOAD=%s PYFINGUARD_LOG=stderr " \
                        "MALLOC_PERTURB_=%s %s\n%s\n" % (lib, MALLOC_PERTURB, " ".join(cmd),
                                                         r.tail())
                    break
                continue
            why = check_guarded(contract, base, r)
            res.guarded.append({"parked": "parked", "same": "same", "same-hang": "hang+parked"}[
                contract[0]] if why is None else r.outcome())
            if why:
                fails.append("guarded run %d: %s" % (i + 1, why))
                res.detail += "    cmd: env LD_PRELOAD=%s PYFINGUARD_LOG=stderr " \
                    "MALLOC_PERTURB_=%s %s\n%s\n    baseline:\n%s\n" % (
                        lib, MALLOC_PERTURB, " ".join(cmd), r.tail(), base.tail())
                break
    if fails:
        res.status, res.reason = "FAIL", "; ".join(fails)
    elif contract and contract[0] == "gap" and lib:
        if gap_met:
            res.status = "XPASS"
            res.reason = ("known gap met the contract in %d of %d runs: update GUARDED" %
                          (gap_met, gap_met + gap_ok))
        else:
            res.status = "XFAIL"
            res.reason = "KNOWN GAP %s (see the summary)" % contract[2].split(":")[0]
    else:
        res.status = "PASS"
    if res.unmeasured:
        res.reason = ("UNMEASURED baseline for CPython %s (recorded, not asserted); " %
                      it.version_str) + res.reason
    if contract is None and lib:
        res.reason += " no guarded contract for this cell"
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lib", help="libpyfinguard.so (default: build/shim/libpyfinguard.so)")
    ap.add_argument("--build-dir", default=None)
    ap.add_argument("--interp", help="interpreter name substrings, comma-separated")
    ap.add_argument("--cell", help="cell names (end-daemon, fin-zap-own, ...) or prefixes")
    ap.add_argument("--runs", type=int, default=1, help="runs per cell and side")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=3.0,
                    help="seconds before a run that reached its MARK is called a hang")
    ap.add_argument("--measure", type=int, metavar="N",
                    help="run each cell N times per side and print outcome counts only")
    ap.add_argument("--strict", action="store_true",
                    help="a cell on an unmeasured CPython release fails")
    a = ap.parse_args(argv)
    no_core()
    lib = library.find(a.lib)
    build_dir = os.path.abspath(a.build_dir) if a.build_dir else build.default_build_dir()
    its = [i for i in interpreters.discover() if i.can_embed]
    its = runner.select(its, a.interp)
    want = [c for c in (a.cell or "").split(",") if c]
    pairs = [(it, c) for it in its for c in cells_for(it)
             if not want or any(cell_name(c) == w or cell_name(c).startswith(w + "-")
                                for w in want)]
    t0 = time.monotonic()
    if a.measure:
        def one(it, c):
            exe = executable(it, build_dir)
            env = clean_env()
            b = collections.Counter(run([exe] + list(c), env, a.timeout).outcome()
                                    for _ in range(a.measure))
            g = collections.Counter()
            if lib:
                genv = dict(env, LD_PRELOAD=lib, PYFINGUARD_LOG="stderr")
                for _ in range(a.measure):
                    r = run([exe] + list(c), genv, a.timeout)
                    g[r.outcome() + ("" if check_guarded(("parked",), r, r) else "!")] += 1
            return it, c, b, g
        fmt = lambda cnt: ", ".join("%s x%d" % kv for kv in sorted(cnt.items()))
        runner.execute(one, pairs, a.jobs, show=lambda r: "%-22s %-22s baseline: %-28s guarded: %s" % (
            cell_name(r[1]), r[0].name, fmt(r[2]), fmt(r[3])))
        print("subinterp: measured in %.0f s ('!': parked contract met)" % (time.monotonic() - t0))
        return 0

    print("subinterp: %d cells on %d interpreters, %d run(s) per side, lib=%s" % (
        len(pairs), len(its), a.runs, lib or "none (baseline only)"), flush=True)
    results = runner.execute(run_cell, [(it, c, lib, build_dir, a.runs, a.timeout, a.strict)
                                        for it, c in pairs], a.jobs)
    print(runner.summary("subinterp", results, t0,
                         ("PASS", "XFAIL (known gaps)", "XPASS", "FAIL", "SKIP")))
    gaps = collections.OrderedDict()   # gap text -> (cells, interpreters)
    for r in results:
        if r.status == "XFAIL":
            cells, names = gaps.setdefault(contract_for(r.cell, r.it)[2], ([], []))
            for lst, x in ((cells, cell_name(r.cell)), (names, r.it.name)):
                if x not in lst:
                    lst.append(x)
    for text, (cells, names) in gaps.items():
        gid, _, why = text.partition(": ")
        print("subinterp: KNOWN GAP %s -- cells %s on %s -- %s" % (
            gid, ", ".join(cells), ", ".join(names), why))
    unm = [r for r in results if r.unmeasured and r.status != "SKIP"]
    if unm:
        print("subinterp: WARNING: %d cell(s) on CPython release(s) with no measured baseline "
              "(%s): recorded, not asserted" % (len(unm), ", ".join(sorted(set(
                  r.it.version_str for r in unm)))))
    return runner.exit_status(results, ("FAIL", "XPASS"))


if __name__ == "__main__":
    sys.exit(main())
