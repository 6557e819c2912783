#!/usr/bin/env python3
"""Exit time of a Python program with many daemon threads, without and with the guard
(docs/performance.md, "Exit with many daemon threads").

The program starts N daemon threads (default 1,000) -- a third blocked in Event.wait(),
a third in os.read() on a pipe nobody writes, a third in a loop of 10 ms sleeps, so that
some wake up during and after finalization and reach the guard as late threads -- then
writes time.monotonic() to a mark file and returns from the main module. The exit time is
the runner's CLOCK_MONOTONIC when the process has been reaped minus that mark: everything
CPython's finalization, the guard's drain and exit watch, and the kernel's teardown of N
threads take. Rounds alternate which side runs first; the figure is the median, with
p90 and the ratio of the medians.

A benchmark, not a test: it prints figures and exits 0 (2 when the library is missing).
Every interpreter tools/pfgpy finds runs, unless --interp narrows it; one that cannot run
programs is printed as skipped with its reason."""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tools"))
from pfgpy import env as pfgenv, interpreters, library  # noqa: E402

PROGRAM = r'''
import os, sys, threading, time
n = int(sys.argv[1])
ev = threading.Event()
r, w = os.pipe()
def waiter(): ev.wait()
def reader(): os.read(r, 1)
def sleeper():
    while True:
        time.sleep(0.01)
kinds = [waiter, reader, sleeper]
for i in range(n):
    threading.Thread(target=kinds[i % 3], daemon=True).start()
time.sleep(0.2)
with open(os.environ["PFG_EXIT_MARK"], "w") as f:
    f.write(repr(time.monotonic()))
'''


def one_exit(it, n, preload, mark, timeout):
    """Seconds from the program's mark to the process reaped, and its exit status."""
    env = pfgenv.scrubbed(preload=preload, set={"PFG_EXIT_MARK": mark})
    if os.path.exists(mark):
        os.unlink(mark)
    p = subprocess.Popen(it.runner + [it.executable, "-c", PROGRAM, str(n)], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        return None, "timed out after %d s" % timeout
    end = time.monotonic()
    try:
        with open(mark) as f:
            start = float(f.read())
    except (OSError, ValueError):
        return None, "no mark (status %d): %s" % (p.returncode, err.decode(errors="replace")[-200:])
    return end - start, p.returncode


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100.0 * (len(xs) - 1))))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1000, help="daemon threads (default 1000)")
    ap.add_argument("--rounds", type=int, default=11, help="runs a side (default 11)")
    ap.add_argument("--interp", action="append", default=[],
                    help="only interpreters whose name contains this (repeatable)")
    ap.add_argument("--lib", help="the guard library (default: <repo>/build/shim/libpyfinguard.so)")
    ap.add_argument("--timeout", type=int, default=60, help="seconds per run (default 60)")
    a = ap.parse_args()
    lib = library.find(explicit=a.lib)
    if lib is None:
        print("exit_threads: no library (%s); build it with tools/setup or pass --lib"
              % (a.lib or library.in_tree()), file=sys.stderr)
        return 2
    its = [i for i in interpreters.discover() if not a.interp or any(s in i.name for s in a.interp)]
    print("exit with %d daemon threads, %d runs a side, library %s, load average %.2f"
          % (a.threads, a.rounds, lib, os.getloadavg()[0]))
    head = "%-34s %10s %10s %10s %10s %8s  %s" % ("interpreter", "p50 ms", "p90 ms", "guard p50",
                                                "guard p90", "ratio", "status")
    print(head)
    print("-" * len(head))
    with tempfile.TemporaryDirectory() as tmp:
        mark = os.path.join(tmp, "mark")
        for it in its:
            if not it.can_run_programs:
                print("%-34s SKIP: %s" % (it.name, it.skip or "cannot run programs (%s)" % it.kind))
                continue
            times = {False: [], True: []}
            statuses = {False: set(), True: set()}
            problem = None
            for r in range(a.rounds):
                for guarded in ((False, True) if r % 2 == 0 else (True, False)):
                    t, st = one_exit(it, a.threads, lib if guarded else None, mark, a.timeout)
                    if t is None:
                        problem = "%s run: %s" % ("guarded" if guarded else "unguarded", st)
                        break
                    times[guarded].append(t)
                    statuses[guarded].add(st)
                if problem:
                    break
            if problem:
                print("%-34s PROBLEM: %s" % (it.name, problem))
                continue
            b50, g50 = statistics.median(times[False]), statistics.median(times[True])
            st = "same" if statuses[False] == statuses[True] else "DIFFERS %s vs %s" % (
                sorted(statuses[False]), sorted(statuses[True]))
            print("%-34s %10.1f %10.1f %10.1f %10.1f %8.3f  %s" % (
                it.name, 1000 * b50, 1000 * pct(times[False], 90), 1000 * g50,
                1000 * pct(times[True], 90), g50 / b50 if b50 else float("nan"), st))
    print("load average at the end %.2f" % os.getloadavg()[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
