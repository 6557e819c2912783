#!/usr/bin/env python3
"""The differential runner's comparison rule (differential.compare, slower_exit) on made-up
runs: each case is an outcome a real run produced or the rule must catch. Prints one line
per case and "N passed, N failed"; exit status 1 when a case failed."""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import differential as d  # noqa: E402


def run(rc, out="x\n", err="", secs=0.05, hung=False):
    r = d.Run(rc, out, err, hung, 1.0)
    r.exit_secs = secs
    return r


CLEAN = [run(15)] * 18
CASES = [
    # (name, unguarded runs, guarded runs, expected result)
    ("identical", CLEAN, CLEAN, "ok"),
    ("other stdout", CLEAN, [run(15, out="y\n")], "FAIL"),
    ("other stderr", CLEAN, [run(15, err="Traceback ...")], "FAIL"),
    ("other status", CLEAN, [run(3)], "FAIL"),
    ("hang", CLEAN, [run(None, hung=True)], "FAIL"),
    ("crash only with the guard", CLEAN, [run(-11)], "FAIL"),
    ("crash prevented", [run(-11, err="Fatal Python error: Segmentation fault")] * 3,
     [run(15)] * 3, "ok (prevented 3 crashes)"),
    ("unguarded clean outcomes disagree", CLEAN + [run(15, err="warning")], CLEAN,
     "BASELINE-NONDET"),
    # pyenv 3.9 busy-xdev without the guard: another thread's fatal error report cut short
    # by the exit is that crash, not a second clean outcome...
    ("cut fatal report without the guard", CLEAN + [run(15, err="Fatal Python error:")],
     CLEAN, "ok"),
    ("same cut report on both sides", CLEAN + [run(15, err="Fatal Python error:")],
     CLEAN + [run(15, err="Fatal Python error: _PyThreadState_Init")], "ok"),
    # ... but with the guard alone it is a difference, and never a prevented crash.
    ("cut fatal report only with the guard", CLEAN,
     CLEAN + [run(15, err="Fatal Python error:")], "FAIL"),
    ("cut report is no prevented crash", [run(-11)] * 3, [run(15, err="Fatal Python error:")],
     "FAIL"),
    ("cut reports prevented", [run(15, err="Fatal Python error:")] * 3, [run(15)] * 3,
     "ok (prevented 3 crashes)"),
    # Exit time: every guarded exit slower (a wait at exit), and a near-hang.
    ("every guarded exit slow", [run(15, secs=0.03)] * 4, [run(15, secs=1.2)] * 4, "FAIL"),
    ("one guarded exit 2 s slower", [run(15, secs=0.05)] * 20,
     [run(15, secs=0.05)] * 19 + [run(15, secs=2.5)], "FAIL"),
    ("one slow exit a side", [run(15, secs=0.05)] * 19 + [run(15, secs=1.0)],
     [run(15, secs=0.05)] * 19 + [run(15, secs=1.1)], "ok"),
]


def main():
    failed = 0
    for name, base, guard, want in CASES:
        got, reasons = d.compare(list(base), list(guard))
        good = got == want
        failed += not good
        print("%s  %-40s %s%s" % ("ok  " if good else "FAIL", name, got,
                                   "" if good else " (want %s: %s)" % (want, reasons)))
    print("%d passed, %d failed" % (len(CASES) - failed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
