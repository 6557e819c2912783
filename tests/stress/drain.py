#!/usr/bin/env python3
"""The drain at CPython's point of no return, and a mutant without it.

    tests/stress/stress.py drain [--runs N] [--only 3.12 ...] --mutant-lib PATH

tests/scenarios/storm.c: four native threads loop PyGILState_Ensure/Release while the
main thread finalizes. A thread that passed its check before the point of no return can be
pre-empted inside CPython's acquisition code while the finalizer frees its thread state
(CPython gh-124619). The guard's drain (docs/design.md, shim/window.cc) waits for such
threads before CPython frees anything.

Checks, on every interpreter that can be embedded:
  * with the guard: every run exits with the program's own status 7;
  * with the mutant library (built with PFG_DRAIN_LIMIT_MS=0: the drain never waits),
    the storm crashes in at least one run over all interpreters -- the check can fail,
    and fails if the drain stops mattering. Measured when this test was written, 40 runs
    each: 7-26 crashes per interpreter on pyenv 3.10/3.12/3.13 and Debian's libpython3.11.
MALLOC_PERTURB_ makes freed memory garbage, so a use after free shows.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

STORM = os.path.join(common.REPO, "tests", "scenarios", "storm.c")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lib")
    ap.add_argument("--mutant-lib", required=True)
    ap.add_argument("--runs", type=int, default=12)
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=20)
    ap.add_argument("--build-dir", default=os.environ.get("PFGPY_BUILD_DIR"))
    a = ap.parse_args()
    lib = common.find_library(a.lib)
    its, skipped = common.pick_interpreters(a.only)
    for it in skipped:
        print("skipped: %s (%s)" % (it.name, it.skip))
    cells = []
    for it in its:
        try:
            exe = common.build.build_embed(it, [STORM], build_dir=a.build_dir)
        except common.build.Unsupported as e:
            print("skipped: %s (%s)" % (it.name, e))
            continue
        cells.append((it, exe))
    if not cells:
        print("no embeddable interpreter here")
        return 77

    def one(exe, library):
        env = common.guard_env(library, True, {"MALLOC_PERTURB_": "94"})
        return common.run([exe], env, a.timeout)

    rows, failures, mutant_crashes = [], [], 0
    for it, exe in cells:
        guarded = common.runner.execute(one, [(exe, lib)] * a.runs, a.jobs, show=False)
        mutant = common.runner.execute(one, [(exe, a.mutant_lib)] * a.runs, a.jobs, show=False)
        bad = [r for r in guarded if r.timed_out or r.status != 7]
        crashed = [r for r in mutant if r.crashed or r.timed_out]
        mutant_crashes += len(crashed)
        for r in bad:
            failures.append("%s with the guard: %s" % (it.name, r.describe()))
        rows.append([it.name, "%d/%d" % (a.runs - len(bad), a.runs),
                     "%d/%d" % (len(crashed), a.runs),
                     ", ".join(sorted({r.describe() for r in crashed})) or "-"])
    common.table(["interpreter", "guard: exit 7", "mutant (no drain): crashed or hung", "mutant outcomes"],
                 rows)
    for f in failures:
        print("FAILURE " + f)
    if mutant_crashes == 0:
        print("FAILURE: the no-drain mutant survived every run: the storm no longer shows the drain")
    return 0 if not failures and mutant_crashes > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
