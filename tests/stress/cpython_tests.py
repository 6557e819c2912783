#!/usr/bin/env python3
"""CPython's own regression tests, without and with the guard (opt-in, long: not in CI).

For each pyenv interpreter and each of test_threading, test_thread, test_threadsignals,
test_atexit, test_capi, test_embed present in its bundled test suite
(<prefix>/lib/python3.X/test), run regrtest on the module once without the guard and once
through the launcher (`tools/pyfinguard run --`, i.e. LD_PRELOAD, inherited by every
subprocess the tests start) twice: in the default configuration (reports and the exit
summary on stderr) and with PYFINGUARD_LOG=<file> PYFINGUARD_QUIET=1. Per-test outcomes are recorded by cpython_runner.py. A test
that passed without the guard and failed with it is re-run alone, with the guard, up to
twice: failing every time is a REGRESSION, passing once is counted as flaky (and shown).

    tests/stress/cpython_tests.py [--versions 3.11 3.12] [--modules test_thread] [--out DIR]

Results are kept in --out (default /tmp/pfg-cpython-tests) per (version, module, mode), so
an interrupted run resumes; --fresh discards them. Exit status 1 on any regression, and on
any run that recorded no test at all (ERROR: it compared nothing). A failing subtest is
compared with its test's outcome without the guard (passing subtests are not recorded).

--sid: the same on the Debian unstable chroot's static /usr/bin/python3.13, 3.14 and 3.15
(tools/sid-env; their libpython3.X-testsuite packages), against the library built inside
the chroot into build-sid/ (what `tools/sid-env matrix` builds; a --lib for this machine is
ignored: its glibc is older). This re-executes as `tools/sid-env cpython-tests ARGS`, which
builds, copies the library to build-sid/cpython-lib/ and runs this script inside with
--in-sid; results go to build-sid/cpython-tests/ unless --out is given. Needs root (exit
77, a skip, without it, as tools/sid-env). Debian ships no Programs/_testembed, so
test_embed's embedding tests skip (reason printed below the table).
"""
import argparse
import collections
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

MODULES = ["test_threading", "test_thread", "test_threadsignals", "test_atexit", "test_capi",
           "test_embed"]
RUNNER = os.path.join(common.HERE, "cpython_runner.py")


_STDLIB = {}


def test_dir(it):
    """<stdlib>/test as the interpreter itself has it (pyenv: <prefix>/lib/python3.X,
    Debian: /usr/lib/python3.X, while its LIBDIR is /usr/lib/<multiarch>)."""
    if it.executable not in _STDLIB:
        r = common.run([it.executable, "-c",
                        "import sysconfig; print(sysconfig.get_paths()['stdlib'])"],
                       common.clean_env(), 60)
        _STDLIB[it.executable] = r.stdout.strip() if r.status == 0 else \
            os.path.join(it.libdir, "python%d.%d" % it.version[:2])
    return os.path.join(_STDLIB[it.executable], "test")


def present(it, mod):
    d = test_dir(it)
    return os.path.exists(os.path.join(d, mod + ".py")) or os.path.isdir(os.path.join(d, mod))


def parent_of(tid):
    """A subtest's id is its test's id plus " (params)"; passing subtests are not recorded,
    their test is (addSuccess only when every subtest passed)."""
    return tid.split(" (", 1)[0]


def outcome_of(outcomes, tid, missing="missing"):
    if tid in outcomes:
        return outcomes[tid][0]
    return outcomes.get(parent_of(tid), [missing])[0]


# Modes: without the guard; with it as deployed by default (reports and the exit summary on
# stderr); with reports sent to a file and the summary off (PYFINGUARD_LOG, _QUIET=1), which
# separates "the guard wrote to stderr" from "the guard changed what the program did".
MODES = ("base", "guard", "guard-quiet")


def run_module(it, lib, mod, mode, outfile, timeout, match=None):
    if os.path.exists(outfile):
        os.unlink(outfile)
    cmd = [it.executable, RUNNER, outfile, mod]
    if match:
        cmd += ["-m", match]
    env = common.clean_env({"PYFINGUARD_LIBRARY": lib})
    if mode != "base":
        cmd = [sys.executable, common.LAUNCHER, "run", "--"] + cmd
    if mode == "guard-quiet":
        env["PYFINGUARD_QUIET"] = "1"
        env["PYFINGUARD_LOG"] = outfile + ".reports"
    cwd = tempfile.mkdtemp(prefix="pfg-cpt-")
    try:
        r = common.run(cmd, env, timeout, cwd=cwd)
    finally:
        shutil.rmtree(cwd, ignore_errors=True)
    outcomes = {}
    if os.path.exists(outfile):
        with open(outfile) as f:
            for line in f:
                try:
                    tid, outcome, detail = json.loads(line)
                except ValueError:
                    continue
                # subtests: a failing subtest fails its test
                if outcome == "fail" or tid not in outcomes:
                    outcomes[tid] = [outcome, detail]
    return {"rc": r.status, "hung": r.timed_out, "secs": round(r.seconds, 1), "outcomes": outcomes,
            "stderr_tail": r.stderr[-3000:], "stdout_tail": r.stdout[-3000:]}


def skip_reasons(res, top=3):
    """The most common skip reasons of one run: [(count, reason)]."""
    c = collections.Counter(d for o, d in res["outcomes"].values() if o == "skip")
    return [(n, d) for d, n in c.most_common(top)]


def sid_reexec(argv):
    """On this machine: run `tools/sid-env cpython-tests ARGS` (inside the chroot, on the
    library built there); never returns."""
    args, skip_next = [], False
    for x in argv:
        if skip_next:
            skip_next = False
            continue
        if x == "--sid":
            continue
        if x == "--lib":
            skip_next = True
            continue
        if x.startswith("--lib="):
            continue
        args.append(x)
    cmd = [os.path.join(common.REPO, "tools", "sid-env"), "cpython-tests"] + args
    sys.stdout.write("--sid: %s (the library is built inside the chroot into build-sid/; "
                     "any --lib is ignored)\n" % " ".join(cmd))
    sys.stdout.flush()
    os.execv(cmd[0], cmd)


def counts(res):
    c = {"pass": 0, "fail": 0, "skip": 0}
    for o, _ in res["outcomes"].values():
        c[o] = c.get(o, 0) + 1
    return c


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lib")
    ap.add_argument("--versions", nargs="*", help="substrings of interpreter names")
    ap.add_argument("--modules", nargs="*", default=MODULES)
    ap.add_argument("--out", default="/tmp/pfg-cpython-tests")
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--fresh", action="store_true")
    ap.add_argument("--sid", action="store_true",
                    help="on the sid chroot's python3.13-3.15 (tools/sid-env cpython-tests)")
    ap.add_argument("--in-sid", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.sid and not a.in_sid:
        sid_reexec(sys.argv[1:])
    if a.in_sid and a.out == ap.get_default("out"):
        a.out = os.path.join(common.REPO, "build-sid", "cpython-tests")
    # the runner starts in a scratch directory: a relative --out would not be found
    a.out = os.path.abspath(a.out)
    lib = common.find_library(a.lib)
    if a.fresh:
        shutil.rmtree(a.out, ignore_errors=True)
    os.makedirs(a.out, exist_ok=True)
    usable, skipped = common.pick_interpreters(a.versions)
    if a.in_sid:
        # The chroot's static /usr/bin/python3.X (the libpython3.X.so entries are for
        # embedders: the test suites run on the executables).
        its = [i for i in usable if i.source == "system" and i.kind == "static exe"]
        for it in its:
            it.name = "sid-python%d.%d.%d" % it.version[:3]
        skipped = [s for s in skipped if s.source == "system"]
        print("Debian unstable chroot (tools/sid-env), commit %s"
              % os.environ.get("PFG_SID_HEAD", "?"))
        for it in its:
            r = common.run(["dpkg-query", "-W", "-f", "${Version}",
                            "python%d.%d" % it.version[:2]], common.clean_env(), 30)
            print("  %s: %s, Debian package %s" % (it.name, it.executable, r.stdout.strip()))
    else:
        its = [i for i in usable if i.source == "pyenv"]
    print("library: %s" % lib)
    for s in skipped:
        print("skipped: %s (%s)" % (s.name, s.skip))
    if not its:
        print("no interpreter to test")
        return 77
    skips, errors = [], []
    rows, regressions, t_start = [], [], time.monotonic()
    for it in its:
        common.assert_guard_loaded(it.executable, lib, via_launcher=True)
        for mod in a.modules:
            if not present(it, mod):
                rows.append([it.name, mod, "absent"] + [""] * 6)
                skips.append("%s %s: not in %s" % (it.name, mod, test_dir(it)))
                continue
            res = {}
            for mode in MODES:
                guard = mode
                tag = "%s.%s.%s" % (it.name, mod, mode)
                cache = os.path.join(a.out, tag + ".json")
                if os.path.exists(cache):
                    with open(cache) as f:
                        res[guard] = json.load(f)
                    continue
                sys.stderr.write("running %s ...\n" % tag)
                r = run_module(it, lib, mod, mode, os.path.join(a.out, tag + ".jsonl"), a.timeout)
                if mode != "base":
                    base = res["base"]["outcomes"]
                    r["reruns"] = {}
                    for tid, (o, _) in sorted(r["outcomes"].items()):
                        # a failing subtest: compare with its test without the guard
                        if o != "fail" or outcome_of(base, tid, "?") != "pass":
                            continue
                        method = parent_of(tid).split(".")[-1]
                        tries = []
                        for _ in range(2):
                            rr = run_module(it, lib, mod, mode,
                                            os.path.join(a.out, tag + ".rerun.jsonl"),
                                            a.timeout, match=method)
                            oc = outcome_of(rr["outcomes"], tid)
                            tries.append(oc)
                            if oc == "pass":
                                break
                        r["reruns"][tid] = tries
                with open(cache, "w") as f:
                    json.dump(r, f)
                res[guard] = r
            b, g, q = res["base"], res["guard"], res["guard-quiet"]
            # A run that recorded no test at all compared nothing: the harness (or the
            # interpreter) is broken, which must not read as "0 regressions".
            for mode in MODES:
                if not res[mode]["outcomes"]:
                    errors.append("%s %s: NO RESULTS in the %s run (%s): %s" % (
                        it.name, mod, mode, "timeout" if res[mode]["hung"] else
                        "exit %s" % res[mode]["rc"],
                        (res[mode]["stderr_tail"].strip().splitlines() or [""])[-1]))
            cb, cg, cq = counts(b), counts(g), counts(q)

            def regs_of(r):
                regs, flaky = [], []
                for tid, tries in sorted(r.get("reruns", {}).items()):
                    (flaky if "pass" in tries else regs).append(tid)
                return regs, flaky
            regs, flaky = regs_of(g)
            qregs, qflaky = regs_of(q)
            regressions += ["%s %s (default config)" % (it.name, t) for t in regs]
            regressions += ["%s %s (reports to a file, quiet)" % (it.name, t) for t in qregs]
            # A guarded run that hung or died by a signal where the run without the guard
            # did not: the tests it never reached are in no count, so it is a regression
            # of its own.
            bad = lambda x: x["hung"] or (x["rc"] is not None and x["rc"] < 0)
            for r, lst, what in ((g, regs, "default config"),
                                 (q, qregs, "reports to a file, quiet")):
                if bad(r) and not bad(b):
                    lst.append("(the run)")
                    regressions.append("%s %s: the whole run %s with the guard (%s)" % (
                        it.name, mod, "timed out" if r["hung"] else "died by signal %d"
                        % -r["rc"], what))
            for n, d in skip_reasons(b):
                skips.append("%s %s: %d skipped: %s" % (it.name, mod, n, d.strip()[:200]))

            def status(r):
                if r["hung"]:
                    return "timeout"
                return "exit %s" % r["rc"]
            fmt = lambda c: "%d/%d/%d" % (c["pass"], c["fail"], c["skip"])
            regfmt = lambda r, f: "%d%s" % (len(r), (" (+%d flaky)" % len(f)) if f else "")
            rows.append([it.name, mod, fmt(cb), fmt(cg), fmt(cq),
                         "%s / %s / %s" % (status(b), status(g), status(q)),
                         "%.0f / %.0f / %.0f" % (b["secs"], g["secs"], q["secs"]),
                         regfmt(regs, flaky), regfmt(qregs, qflaky)])
    print()
    common.table(["interpreter", "module", "without guard p/f/s", "guard p/f/s",
                  "guard, reports to file p/f/s", "regrtest exit (3 runs)", "seconds (3 runs)",
                  "regressions", "regressions, reports to file"], rows)
    print()
    for r in regressions:
        print("REGRESSION %s" % r)
    for e in errors:
        print("ERROR %s" % e)
    print("(a regression: passed without the guard, failed with it in the full run and in "
          "both re-runs alone; flaky: failed in the full run, passed when re-run)")
    if skips:
        print("skips (without the guard; the most common reasons per module):")
        for x in skips:
            print("  " + x)
        print()
    print("total wall time this invocation: %.0f s" % (time.monotonic() - t_start))
    return 1 if regressions or errors else 0


if __name__ == "__main__":
    sys.exit(main())
