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
an interrupted run resumes; --fresh discards them. Exit status 1 on any regression.
"""
import argparse
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


def present(it, mod):
    d = os.path.join(it.libdir, "python%d.%d" % it.version[:2], "test")
    return os.path.exists(os.path.join(d, mod + ".py")) or os.path.isdir(os.path.join(d, mod))


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
    return {"rc": r.rc, "hung": r.hung, "secs": round(r.secs, 1), "outcomes": outcomes,
            "stderr_tail": r.err[-3000:], "stdout_tail": r.out[-3000:]}


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
    a = ap.parse_args()
    lib = common.find_library(a.lib)
    if a.fresh:
        shutil.rmtree(a.out, ignore_errors=True)
    os.makedirs(a.out, exist_ok=True)
    usable, skipped = common.pick_interpreters(a.versions)
    its = [i for i in usable if i.source == "pyenv"]
    print("library: %s" % lib)
    for s in skipped:
        print("skipped: %s (%s)" % (s.name, s.skip))
    rows, regressions, t_start = [], [], time.monotonic()
    for it in its:
        common.assert_guard_loaded(it.executable, lib, via_launcher=True)
        for mod in a.modules:
            if not present(it, mod):
                rows.append([it.name, mod, "absent"] + [""] * 6)
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
                        if o != "fail" or base.get(tid, ["?"])[0] != "pass":
                            continue
                        method = tid.split(".")[-1]
                        tries = []
                        for _ in range(2):
                            rr = run_module(it, lib, mod, mode,
                                            os.path.join(a.out, tag + ".rerun.jsonl"),
                                            a.timeout, match=method)
                            oc = rr["outcomes"].get(tid, ["missing", ""])[0]
                            tries.append(oc)
                            if oc == "pass":
                                break
                        r["reruns"][tid] = tries
                with open(cache, "w") as f:
                    json.dump(r, f)
                res[guard] = r
            b, g, q = res["base"], res["guard"], res["guard-quiet"]
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
    print("(a regression: passed without the guard, failed with it in the full run and in "
          "both re-runs alone; flaky: failed in the full run, passed when re-run)")
    print("total wall time this invocation: %.0f s" % (time.monotonic() - t_start))
    return 1 if regressions else 0


if __name__ == "__main__":
    sys.exit(main())
