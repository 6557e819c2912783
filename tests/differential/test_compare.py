#!/usr/bin/env python3
"""The differential runner's comparison rule (differential.compare, slower_exit) on made-up
runs: each case is an outcome a real run produced or the rule must catch. Prints one line
per case and "N passed, N failed"; exit status 1 when a case failed."""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import differential as d  # noqa: E402


def run(rc, out="x\n", err="", secs=0.05, hung=False, reports=0):
    r = d.Run(rc, out, err, hung, 1.0)
    r.exit_secs = secs
    r.guard_lines = reports
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


# The exit-bound rule, for programs whose own status the runner knows (OWN_STATUS, here 21):
# an unguarded hang or crash must become a guarded exit with that status, the same stdout,
# and a pyfinguard: report; a guarded hang fails whatever the unguarded runs did.
HUNG = [run(None, hung=True)] * 2
BOUNDED = [run(21, reports=3, secs=0.3)] * 2
STATUS_CASES = [
    ("hang bounded", HUNG, BOUNDED, "ok (bounded 2 hangs)"),
    ("hang stays a hang", HUNG, [run(None, hung=True)], "FAIL"),
    ("hang becomes another status", HUNG, [run(0, reports=3)], "FAIL"),
    ("hang bounded in silence", HUNG, [run(21)], "FAIL"),
    ("hang bounded, other stdout", HUNG, [run(21, out="y\n", reports=3)], "FAIL"),
    ("hang bounded, a traceback", HUNG, [run(21, err="Traceback ...", reports=3)], "FAIL"),
    ("hang becomes a crash", HUNG, [run(-6)], "FAIL"),
    ("crash bounded and reported", [run(-11)] * 2, BOUNDED, "ok (prevented 2 crashes)"),
    ("crash prevented in silence", [run(-11)] * 2, [run(21)], "FAIL"),
    ("crash prevented, other status", [run(-11)] * 2, [run(0, reports=1)], "FAIL"),
    ("crash to a hang", [run(-11)] * 2, [run(None, hung=True)], "FAIL"),
    # debian-python3.11 conddrain-cffi: SIGSEGV/SIGILL on both sides with the guard of
    # 2026-12-06 -- the same crash is no excuse where every crash must become an exit.
    ("crash stays the same crash", [run(-11)] * 2, [run(-11)] * 2, "FAIL"),
    ("a clean program's rare crash, guarded", [run(21)] * 5 + [run(-11)], [run(-11)], "FAIL"),
    # pyenv 3.6 embed-atexit-join with the guard of 2026-12-06: the join went through and
    # the atexit handler printed its line: more than the hung runs printed, still right.
    ("hang, the guarded exit gets further", HUNG, [run(21, out="x\njoined\n", reports=1)],
     "ok (finished 1 exit)"),
    ("hang, the guarded stdout is other", HUNG, [run(21, out="y\n", reports=1)], "FAIL"),
    # pyenv 3.6-3.8 lockbus with the guard that ends late threads as CPython 3.9+ does:
    # the destructor ran and printed its line; nothing was cut short, no report needed.
    ("hang, the guarded exit finishes in silence", HUNG, [run(21, out="x\nstopped\n")] * 2,
     "ok (finished 2 exits)"),
    ("hang, silent but cut short", HUNG, [run(21)], "FAIL"),
    # sid 3.14 embed-atexit-join: unguarded clean, hang or SIGABRT; 2 runs showed the
    # abort and the hang, the guarded runs printed the atexit handler's line.
    ("crash or hang, the guarded exit finishes in silence", [run(-6), run(None, hung=True)],
     [run(21, out="x\nd\n")], "ok (finished 1 exit)"),
    ("crash, silent and cut short", [run(-11)] * 2, [run(21)], "FAIL"),
    ("clean stays clean", [run(21)] * 2, [run(21)] * 2, "ok"),
    ("clean cut short by a bound", [run(21, out="x\ndestructor\n")] * 2, BOUNDED, "FAIL"),
    # pyenv 3.7 lockbus-ctypes hangs in 5 of 6 unguarded runs and exits cleanly in 1: a
    # bounded guarded exit is as right there as a clean one.
    ("clean or hang unguarded, bounded guarded", [run(21, out="x\nd\n"), run(None, hung=True)],
     BOUNDED, "ok (bounded 2 hangs)"),
    ("clean or hang unguarded, bounded but silent",
     [run(21, out="x\nd\n"), run(None, hung=True)], [run(21)], "FAIL"),
    ("clean or crash unguarded, bounded guarded", [run(21, out="x\nd\n"), run(-11)],
     BOUNDED, "ok (prevented 2 crashes)"),
    ("clean or hang unguarded, clean guarded", [run(21, out="x\nd\n"), run(None, hung=True)],
     [run(21, out="x\nd\n")], "ok"),
    ("hang, and a hang guarded beside bounded ones", HUNG, BOUNDED + [run(None, hung=True)], "FAIL"),
]


def main():
    failed = 0
    cases = [c + (None,) for c in CASES] + [c + (21,) for c in STATUS_CASES]
    for name, base, guard, want, status in cases:
        got, reasons = d.compare(list(base), list(guard), status)
        good = got == want
        failed += not good
        print("%s  %-40s %s%s" % ("ok  " if good else "FAIL", name, got,
                                   "" if good else " (want %s: %s)" % (want, reasons)))
    print("%d passed, %d failed" % (len(cases) - failed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
