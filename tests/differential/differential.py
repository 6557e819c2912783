#!/usr/bin/env python3
"""Differential corpus: programs that end while threads still work, without and with the guard.

    tests/differential/differential.py [corpus] [--runs N] [--lib PATH] [--only NAME...]
                                       [--programs NAME...] [--markdown FILE]
    tests/differential/differential.py --exitlibs [--runs N] [--hang-timeout S] ...
    tests/differential/differential.py acceptance [--runs N] [--lib PATH]
    tests/differential/differential.py baseline --runs N      (determinism of the corpus)

corpus: every program of CORPUS (tests/differential/corpus/) runs on every python
executable tools/pfgpy finds, N times without and N times with the guard (LD_PRELOAD,
default environment), the two interleaved so that both see the same machine load, two
processes at a time, which side goes first alternating from run to run (the batch's last
job runs alone, and some exits are much slower alone). Per (program, interpreter) the
guarded runs must match the unguarded ones in exit status (or signal), stdout and
stderr -- stderr without the guard's own documented lines ("pyfinguard: ...",
docs/diagnostics.md), counted in a column -- must not hang (--timeout, the process group
is killed), and must not exit slower (below). Any difference fails the cell, except a
crash the guard prevented: every unguarded run died of SIGSEGV/SIGABRT/SIGBUS/SIGILL/
SIGFPE, the guarded run exited cleanly with the same stdout (where some unguarded runs
exit cleanly, a clean guarded run must match them exactly).
A cell whose unguarded runs disagree among their clean outcomes is a corpus bug and fails
too (BASELINE-NONDET). A crash is compared by its signal and stdout (its stderr holds
addresses); so is a clean exit whose stderr holds "Fatal Python error" (another thread's
crash report, cut short because the exit won the race), which is not a clean outcome of
its own. When a guarded run crashed with a signal (or had such a cut report) no unguarded
run showed, up to --confirm (20; 5 times that on 3.9-3.11 under -X dev, where the
crash is rare: rare_crash_factor) more unguarded runs look for it first: some cells crash
without the guard now and then (debian-python3.11 -X dev: SIGSEGV in 9 of 21 runs), and a
few runs per side would otherwise blame the guard for CPython's crash. A program or flag
an interpreter lacks is a SKIP with its reason.

Exit time: each program writes time.monotonic() to $PFGDIFF_MARK when it starts to exit;
the runner takes its own CLOCK_MONOTONIC when the process has been reaped (and its pipes
closed). Only clean runs count. The cell fails when
  (1) guarded p50 > 1.5 x unguarded p50 + 100 ms AND the fastest guarded run is slower than
      unguarded p50 + 100 ms (a systematic delay: every guarded exit is slow), or
  (2) with >= 20 runs a side, guarded p95 > 1.5 x unguarded p95 + 200 ms (a slow tail), or
  (3) the slowest guarded exit > the slowest unguarded one + 2 s (a near-hang).
A cell that fails this on the CI size's few runs gets --confirm more runs a side,
interleaved, and is judged by the same rule on all of them: some exits are bimodal (pyenv
3.7 ctypes-pydll, 2 runs a side in a loaded CI run: 55 and 263 ms without the guard, 199
and 222 ms with it; 20 whole runs a side on a quiet machine had the same median).
Why: on 2 shared cores the same program's exit takes 10-150 ms typically but single runs
take up to ~1 s when other jobs load the machine (measured: 20 unguarded runs per cell,
load average 14, p50 6-145 ms, p95 up to 320 ms, max up to 1.1 s). A bound on a median
or a maximum of 2-3 runs alone would fail at random; requiring every guarded run to be
slow is what a guard that waits at exit does (a grace period, the exit summary's 250 ms
wait, the drain's 1 s bound), while a scheduling spike hits one run. (2) needs the long
size to be meaningful; (3) holds at any size. Below ~100 ms per exit the CI size cannot
tell a delay from noise; the long size's p50 and p95 columns can.

--exitlibs: the exit-time libraries (EXITLIBS; corpus/native: C/C++ libraries bound with
ctypes/cffi, a pybind11 module, embedders) whose exit needs a lock or a thread that a late
thread holds. Without a guard some of them hang at exit on some CPythons (a late thread
blocked for ever in take_gil keeps the lock), so their unguarded runs get --hang-timeout
(4 s) and a hang there is a baseline outcome. The runner knows each program's own exit
status (OWN_STATUS: no hung run shows it), and the rule is stricter than above:
  * a guarded hang always fails;
  * where unguarded runs hung or crashed, a guarded run that does not match a clean
    unguarded run must exit with the program's own status, the stdout of the hung or
    crashed runs (or more: the exit got further), at least one "pyfinguard:" line on
    stderr (the guard says what it parked or ended and why the exit was cut short), and --
    where the unguarded runs hung -- no other stderr; counted "bounded N hangs" /
    "prevented N crashes". An exit that got past the point where every unguarded run hung
    or crashed (its stdout has lines none of them printed) needs no report: nothing was
    cut short ("finished N exits");
  * where some unguarded runs exit cleanly, a guarded run must match them exactly (the
    exit-time rule above included), as for the corpus.
Guarded runs get --timeout (30 s): longer than any exit bound the guard may wait.

acceptance (docs/design.md, "The principle"): (a) ctypes.PyDLL qsort callbacks -- PyGILState_Ensure nested under
the GIL -- in 16 daemon threads while main exits (its shutdown joins a thread and runs an
atexit handler first), and (b) busy daemon threads under
`-X dev -X tracemalloc=5 -X faulthandler` (without the thread churn: busy_daemons.py says why): with the guard, N runs per interpreter, 0 hangs,
0 aborts or other signals, and each run's exit status and stdout those of the program
(checked against one unguarded run).

--sysroot DIR: the python executables of another architecture's sysroot instead of this
machine's (tools/debian-env bookworm-arm64|trixie-arm64 differential), every run started
under qemu-user (pfgpy.interpreters.discover_sysroot), native parts cross-built, the same
comparison rule. A program that starts programs itself (EXECS) is a SKIP there: without
binfmt_misc, its child is an arm64 file this machine cannot execute.

Prints a Markdown table, then "N passed, N failed, N skipped" (cells). Exit status 1 when
a cell failed.
"""
import argparse
import os
import signal
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS_DIR = os.path.join(HERE, "corpus")
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "stress"))
import common  # noqa: E402  (tests/stress/common.py: library, interpreters, environment, tables)
from pfgpy import env, run as pfgrun, runner  # noqa: E402

XFLAGS_ALL = ["-X", "dev", "-X", "tracemalloc=5", "-X", "faulthandler"]
NEED_DEV = ((3, 7), "-X dev is new in Python 3.7")

# name, script + arguments, interpreter flags, (minimum version, reason) or None, what
CORPUS = [
    ("io-pipe", ["io_pipe.py"], [], None,
     "daemons blocked in os.read on pipes, half woken every ms"),
    ("sockets-select", ["sockets_select.py"], [], None,
     "127.0.0.1 echo server in select(), chatting clients, a daemon in accept()"),
    ("queue-consumers", ["queue_consumers.py"], [], None,
     "queue.Queue consumers and an endless producer"),
    ("subprocess", ["subprocess_threads.py"], [], None,
     "daemons looping Popen('cat').communicate()"),
    ("sqlite3", ["sqlite_threads.py"], [], None,
     "daemons inserting and querying sqlite3 databases"),
    ("hashlib-zlib", ["hash_zlib_busy.py"], [], None,
     "daemons hashing and compressing 1 MiB blocks (GIL released)"),
    ("futures-timer", ["futures_timer.py"], [], None,
     "ThreadPoolExecutor tasks running at exit, a daemon's executor, Timers"),
    ("asyncio-daemon-loop", ["asyncio_daemon.py"], [], None,
     "asyncio loop running forever in a daemon thread, run_in_executor"),
    ("os-fork", ["fork_daemons.py"], [], None,
     "fork with busy daemons; a child finalizes with its own busy daemons"),
    ("mp-fork", ["mp_pool.py", "fork"], [], None,
     "multiprocessing 'fork': Pool, Process with busy daemons, busy parent"),
    ("mp-spawn", ["mp_pool.py", "spawn"], [], None,
     "multiprocessing 'spawn': the same"),
    ("signals", ["signals_shutdown.py"], [], None,
     "SIGWINCH/SIGURG/SIGCHLD storm with Python handlers; SIGTERM -> SystemExit"),
    ("busy", ["busy_daemons.py"], [], None,
     "busy daemons: allocating, thread churn, zlib, file I/O, pipes"),
    ("busy-xdev", ["busy_daemons.py"], ["-X", "dev"], NEED_DEV, "the same under -X dev"),
    ("busy-tracemalloc", ["busy_daemons.py"], ["-X", "tracemalloc=5"], None,
     "the same under -X tracemalloc=5"),
    ("busy-faulthandler", ["busy_daemons.py"], ["-X", "faulthandler"], None,
     "the same under -X faulthandler"),
    ("busy-xall", ["busy_daemons.py"], XFLAGS_ALL, NEED_DEV,
     "the same under -X dev -X tracemalloc=5 -X faulthandler"),
    ("ctypes-cdll", ["ctypes_qsort.py", "cdll", "4"], [], None,
     "ctypes docs' qsort comparator via CDLL in 4 daemons"),
    ("ctypes-pydll", ["ctypes_qsort.py", "pydll", "4"], [], None,
     "the same via PyDLL: nested PyGILState_Ensure under the GIL"),
    ("subinterpreters", ["subinterp.py"], [], ((3, 12), "sub-interpreters from Python need "
                                                      "_xxsubinterpreters or _interpreters (3.12+)"),
     "sub-interpreters (3.12+), one run by a thread at exit"),
    ("1000-daemons", ["thousand_daemons.py"], [], None,
     "1,000 daemons: os.read, Lock.acquire, sleeps, bytecode"),
]

# Exit-time libraries (the exitlibs mode): native libraries and embedders whose exit needs
# what a late thread holds (corpus/native/, README "Exit-time libraries"). Arguments
# "@lib:SRC" (a shared library built once, no Python headers: ctypes/cffi bind it),
# "@ext:SRC" (a pybind11 module built for the interpreter: its directory) and a first
# element "@embed:SRC" (an embedder linked to the interpreter's libpython, run instead of
# the interpreter) are built by tools/pfgpy/build.py and replaced by their paths.
# Without a guard some of them hang at exit (a late thread blocked for ever keeps a lock
# the exit needs): their unguarded runs have --hang-timeout, and that hang is a baseline
# outcome the guarded run must turn into an exit with the program's own status (OWN_STATUS).
EXITLIBS = [
    ("lockbus-ctypes", ["lockbus.py", "@lib:lockbus.cc", "ctypes", "workers"], [], None,
     "C++ bus: native workers call a ctypes listener inside a std::lock_guard; "
     "its global's destructor takes the mutex at exit"),
    ("lockbus-cffi", ["lockbus.py", "@lib:lockbus.cc", "cffi", "workers"], [], None,
     "the same, the listener a cffi callback"),
    ("lockbus-pump-ctypes", ["lockbus.py", "@lib:lockbus.cc", "ctypes", "pump"], [], None,
     "the same bus pumped by Python daemon threads blocked inside the library (ctypes)"),
    ("lockbus-pump-cffi", ["lockbus.py", "@lib:lockbus.cc", "cffi", "pump"], [], None,
     "the same with cffi"),
    ("conddrain-ctypes", ["conddrain.py", "@lib:conddrain.c", "ctypes", "0"], [], None,
     "C pool: the destructor waits on a condvar (no limit) for each worker's final "
     "ctypes callback"),
    ("conddrain-cffi", ["conddrain.py", "@lib:conddrain.c", "cffi", "0"], [], None,
     "the same with cffi"),
    ("conddrain-300ms-ctypes", ["conddrain.py", "@lib:conddrain.c", "ctypes", "300"], [], None,
     "the same drain bounded at 300 ms"),
    ("conddrain-300ms-cffi", ["conddrain.py", "@lib:conddrain.c", "cffi", "300"], [], None,
     "the same with cffi"),
    ("pybind11-mutex", ["pybind_mutex.py", "@ext:pfgmutex.cc"], [], None,
     "pybind11: a daemon holds a std::mutex around gil_scoped_release; a static "
     "destructor wakes it and locks the mutex"),
    ("embed-atexit-join", ["@embed:embed_atexit.c", "join"], [], None,
     "embedder: a native thread runs Python in a loop; atexit() joins it"),
    ("embed-atexit-lock", ["@embed:embed_atexit.c", "lock"], [], None,
     "embedder: the thread holds a mutex around each Python call; atexit() locks it"),
    ("slowjoin-2s", ["slowjoin.py", "@lib:slowjoin.cc", "2000"], [], None,
     "a legitimate slow exit: a C++ destructor joins a native worker finishing a 2 s "
     "task, Python daemons waking every ms beside it"),
]
# Each program's own exit status (what exit_now() or main returns). Known to the runner
# because a hung unguarded run never shows it.
OWN_STATUS = {p[0]: s for p, s in zip(EXITLIBS, [21, 21, 21, 21, 22, 22, 22, 22, 23, 24, 24, 25])}
# Seconds an exit legitimately waits (added to --hang-timeout).
EXIT_WAIT = {"slowjoin-2s": 2.0}
NATIVE_DIR = os.path.join(CORPUS_DIR, "native")

ACCEPTANCE = [
    ("a-pydll-nested-ensure", ["ctypes_qsort.py", "pydll", "16"], [], None,
     "(a) ctypes.PyDLL qsort callbacks (nested PyGILState_Ensure under the GIL) in 16 daemons"),
    ("b-xdev-tracemalloc-faulthandler", ["busy_daemons.py", "no-churn"], XFLAGS_ALL, NEED_DEV,
     "(b) busy daemons (no thread start-up: see busy_daemons.py) under -X dev -X tracemalloc=5 -X faulthandler"),
]

# Programs that start programs of their interpreter's architecture (cat, true, a spawned
# python): a SKIP under --sysroot (module docstring).
EXECS = {"subprocess": "Popen('cat')", "mp-spawn": "spawns sys.executable",
         "signals": "subprocess.call(['true'])"}

CRASH_SIGNALS = (signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS, signal.SIGILL, signal.SIGFPE)
SKIP_STATUS = 77


class Run(pfgrun.Result):
    """A run: stderr without the guard's own lines (counted in guard_lines); exit_secs is
    the time from the program's mark (its end of main) to its exit, wall the whole run."""
    guard_lines = exit_secs = wall = None

    def kind(self):
        return self.describe()

    @property
    def crashed(self):
        return not self.timed_out and self.status < 0 and -self.status in [int(s) for s in CRASH_SIGNALS]

    @property
    def clean(self):
        return not self.timed_out and self.status >= 0

    @property
    def fatal_cut(self):
        # A clean exit with CPython's fatal error report in stderr: another thread was
        # aborting (the 3.9-3.11 thread start crash under -X dev, docs/limitations.md) and
        # the exit won the race, cutting the report short (pyenv 3.9 busy-xdev, 1 of 20
        # unguarded runs: stderr exactly "Fatal Python error:"). It is that crash, not a
        # clean outcome of its own.
        return self.clean and "Fatal Python error" in self.stderr

    def crash_key(self):
        # What the confirm pass looks for without the guard: a signal, or a cut report.
        return self.kind() if self.crashed else ("%s, fatal error cut short" % self.kind()
                                                  if self.fatal_cut else None)

    def outcome(self):
        # A crash's stderr (a fatal error's addresses, faulthandler's thread dumps) differs
        # from run to run: crashes are compared by signal and stdout.
        return (self.kind(), self.stdout, "<crash>" if self.crashed else
                "<fatal error cut short>" if self.fatal_cut else self.stderr)


# --guard-env NAME=VALUE settings for the guarded runs (e.g. PYFINGUARD_EXIT_TIMEOUT=1:
# does a legitimate slow exit survive a short bound?). The caller's own PYFINGUARD_*
# variables are scrubbed: the guard is tested with its defaults unless asked here.
GUARD_ENV = {}


def child_env(lib, guarded, mark):
    # The caller's PYTHON* settings would change what a program does (unbuffered output,
    # dev mode, tracemalloc...): each program gets the interpreter's defaults plus its flags.
    extra = {"PYTHONDONTWRITEBYTECODE": "1",    # no __pycache__ in the tree
             "PFGDIFF_MARK": mark}
    if guarded:
        extra.update(GUARD_ENV)
    return env.scrubbed(python="all", preload=lib if guarded else None, set=extra)


def run_one(cmd, lib, guarded, timeout):
    """One run in its own process group, killed (the whole group) on timeout."""
    fd, mark = tempfile.mkstemp(prefix="pfgdiff-mark-")
    os.close(fd)
    try:
        # Leftover children of the program (a fork's child, a cat) end with their pipes;
        # a group left behind after a hang is killed by common.run.
        c = common.run(cmd, child_env(lib, guarded, mark), timeout, cwd=CORPUS_DIR)
        t1 = time.monotonic()
        try:
            with open(mark) as f:
                exit_secs = t1 - float(f.read().strip())
        except (OSError, ValueError):
            exit_secs = None
    finally:
        os.unlink(mark)
    lines = c.stderr.splitlines(True)
    r = Run(c.status, c.stdout, "".join(l for l in lines if not l.startswith("pyfinguard:")),
            c.timed_out, c.seconds)
    r.guard_lines = sum(1 for l in lines if l.startswith("pyfinguard:"))
    r.exit_secs, r.wall = exit_secs, c.seconds
    return r


def pct(values, q):
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    v = sorted(values)
    k = max(0, min(len(v) - 1, int(-(-q * len(v) // 100)) - 1))
    return v[k]


def fmt_times(values):
    if not values:
        return "-"
    return "%d/%d/%d" % tuple(1000 * x for x in (pct(values, 50), pct(values, 95), max(values)))


def summarize(runs):
    """'exit 3 x5' or 'exit 3 x4, SIGSEGV x1'."""
    counts = {}
    for r in runs:
        counts[r.kind()] = counts.get(r.kind(), 0) + 1
    return ", ".join("%s x%d" % (k, n) for k, n in sorted(counts.items(), key=lambda kv: -kv[1]))


def rare_crash_factor(it, prog):
    """How many times --confirm the confirm pass may take for this cell. CPython 3.9-3.11
    under -X dev crash a thread that starts while the runtime is torn down, with and
    without the guard (docs/limitations.md, "A thread that starts while the runtime is torn
    down"), but rarely: pyenv 3.9 busy-xdev, 1 SIGSEGV in 8 unguarded runs one time, 1 in
    20 another, 0 in 22 a third. --confirm runs miss a crash that rare in about a third of
    the cells where a guarded run happened to show it, so these cells look 5 times as
    long. The crash must still show without the guard for the cell to pass."""
    flags = prog[2]
    dev = any(flags[i] == "-X" and flags[i + 1] == "dev" for i in range(len(flags) - 1))
    return 5 if dev and (3, 9) <= tuple(it.version[:2]) <= (3, 11) else 1


def short(text, n=160):
    text = text.strip().replace("\n", " | ")
    return text if len(text) <= n else text[:n] + "..."


def compare(base, guard, status=None):
    """(result, reasons): result is 'ok', 'ok (prevented N crashes)', 'ok (bounded N
    hangs)', 'FAIL' or 'BASELINE-NONDET'. status: the program's own exit status where the
    runner knows it (OWN_STATUS); then an unguarded hang or crash must become a guarded exit
    with that status and a pyfinguard: report (the exit-bound rule, module docstring)."""
    reasons = []
    clean = set(r.outcome() for r in base if r.clean and not r.fatal_cut)
    if len(clean) > 1:
        outs = sorted(clean)
        return "BASELINE-NONDET", ["unguarded runs disagree: %s" % " VS ".join(
            "%s out=%r err=%r" % (k, short(o, 80), short(e, 120)) for k, o, e in outs[:3])]
    known = set(r.outcome() for r in base if not r.timed_out)
    base_crashed = any(r.crashed or r.fatal_cut for r in base)
    base_hung = any(r.timed_out for r in base)
    hung_errs = set(r.stderr for r in base if r.timed_out)
    base_outs = set(r.stdout for r in base)
    unclean_outs = set(r.stdout for r in base if r.timed_out or r.crashed or r.fatal_cut)
    prevented = bounded = avoided = 0
    cut = []     # guarded runs accepted as bounded or prevented: no exit time to compare
    for g in guard:
        if g.timed_out:
            # Never acceptable, whatever the unguarded runs did.
            reasons.append("guarded run hung")
            continue
        if status is not None and (g.crashed or g.fatal_cut):
            # Where the contract is "every crash becomes an exit", a guarded crash is a
            # failure even where the unguarded runs crashed the same way.
            reasons.append("guarded %s (unguarded %s): the guard must turn it into an exit "
                           "with status %d" % (g.kind(), summarize(base), status))
            continue
        if g.outcome() in known:
            continue
        if status is not None and g.clean and not g.fatal_cut and (base_crashed or base_hung):
            # Unguarded runs crashed or hung: the guarded run must exit with the program's
            # own status, the stdout of those runs, and say why on stderr. Where other
            # unguarded runs exit cleanly (pyenv 3.7 lockbus-ctypes: 1 of 6 runs), a guarded
            # run matching them was accepted above; one that ends like the hung or crashed
            # runs, bounded, is accepted too: which of the two the unguarded runs show is
            # chance, and the verdict must not be.
            why = []
            if g.status != status:
                why.append("guarded %s, the program's own status is %d" % (g.kind(), status))
            # The stdout of the hung or crashed runs, or more: the exit may get further
            # than it did without the guard (pyenv 3.6 embed-atexit-join: the atexit
            # handler's line after the join), never less or other lines.
            if not any(g.stdout.startswith(o) for o in unclean_outs):
                why.append("stdout differs: %r" % short(g.stdout))
            # An exit that went past the point where every unguarded run hung or crashed
            # (its stdout has lines none of them printed: the destructor or atexit handler
            # that was blocked ran) was not cut short, and needs no report: the guard ended
            # the late thread as CPython 3.9-3.13.7 does (pyenv 3.6-3.8 lockbus and
            # embed-atexit; sid 3.14 embed-atexit-join, whose unguarded runs exit cleanly,
            # hang or abort: which of them 2 runs show is chance). An exit the guard's bound
            # cut short, or a crash it prevented before the program's last line, must say so.
            finished = all(g.stdout.startswith(o) and len(g.stdout) > len(o) for o in unclean_outs)
            if not g.guard_lines and not finished:
                why.append("guarded exit without a pyfinguard: report")
            if base_hung and not base_crashed and g.stderr not in hung_errs:
                why.append("stderr differs: %r (unguarded, hung: %r)" % (
                    short(g.stderr, 300), short(sorted(hung_errs)[0], 120)))
            if why:
                reasons.extend(why)
            elif finished:
                avoided += 1
            elif base_crashed:
                prevented += 1
            else:
                bounded += 1
            cut.append(g)
            continue
        # A prevented crash: every unguarded run crashed, the guarded one exited with the
        # same stdout. (Where some unguarded runs were clean, a clean guarded run must
        # match them exactly: it was compared above.)
        if status is None and g.clean and not g.fatal_cut and base_crashed and not clean \
                and g.stdout in base_outs:
            prevented += 1
            continue
        if g.kind() not in set(k for k, _, _ in known):
            reasons.append("guarded %s, unguarded %s: %s" % (g.kind(), summarize(base),
                                                             short(g.stderr, 240)))
        elif g.stdout not in base_outs:
            reasons.append("stdout differs: %r" % short(g.stdout))
        else:
            ref = [e for k, o, e in known if k == g.kind()]
            reasons.append("stderr differs: %r (unguarded: %r)" % (
                short(g.stderr, 300), short(ref[0] if ref else "", 120)))
    bt = [r.exit_secs for r in base if r.clean and r.exit_secs is not None]
    gt = [r.exit_secs for r in guard if r.clean and r.exit_secs is not None and
          not any(r is c for c in cut)]
    reasons += slower_exit(bt, gt)
    if reasons:
        # One line per distinct reason, with its count.
        uniq = []
        for x in reasons:
            if x not in uniq:
                uniq.append(x)
        return "FAIL", ["%s (%d of %d guarded runs)" % (x, reasons.count(x), len(guard))
                        if x.startswith(("guarded", "stdout", "stderr")) else x for x in uniq]
    done = []
    if prevented:
        done.append("prevented %d crash%s" % (prevented, "es" if prevented > 1 else ""))
    if bounded:
        done.append("bounded %d hang%s" % (bounded, "s" if bounded > 1 else ""))
    if avoided:
        done.append("finished %d exit%s" % (avoided, "s" if avoided > 1 else ""))
    if done:
        return "ok (%s)" % ", ".join(done), []
    return "ok", []


def slower_exit(bt, gt):
    """The exit-time rule (module docstring): a systematic delay, a slower tail, a
    near-hang."""
    if not bt or not gt:
        return []
    out = []
    b50, g50 = pct(bt, 50), pct(gt, 50)
    if g50 > 1.5 * b50 + 0.100 and min(gt) > b50 + 0.100:
        out.append("exit slower: p50 %.0f ms vs %.0f ms, fastest guarded %.0f ms" % (
            1000 * g50, 1000 * b50, 1000 * min(gt)))
    if len(bt) >= 20 and len(gt) >= 20 and pct(gt, 95) > 1.5 * pct(bt, 95) + 0.200:
        out.append("exit slower: p95 %.0f ms vs %.0f ms" % (1000 * pct(gt, 95), 1000 * pct(bt, 95)))
    if max(gt) > max(bt) + 2.0:
        out.append("exit slower: max %.0f ms vs %.0f ms" % (1000 * max(gt), 1000 * max(bt)))
    return out


def static_skip(it, need):
    if need and it.version < need[0]:
        return need[1]
    return None


def is_embed(prog):
    return prog[1][0].startswith("@embed:")


def cells_for(programs, its):
    """(interpreter, program, skip reason or None). A Python program runs on every
    interpreter that runs programs; an embedder on every one with a shared libpython (the
    static /usr/bin/python3.11 is a SKIP: debian-libpython3.11 is its libpython)."""
    cells = []
    for it in its:
        for prog in programs:
            if is_embed(prog):
                if it.can_embed:
                    cells.append((it, prog, None))
                elif it.can_run_programs:
                    cells.append((it, prog, "%s has no shared libpython to embed" % it.name))
            elif it.can_run_programs:
                cells.append((it, prog, None))
    return cells


# (interpreter name, program name) -> command line, for programs that need a build.
COMMANDS = {}


def build_command(it, prog):
    """prog's command line on it, building its native parts (tools/pfgpy/build.py caches
    them by source hash: only the first run compiles). Raises build.Unsupported (a SKIP)
    or build.BuildError."""
    from pfgpy import build
    _, script, flags, _, _ = prog

    def native(x):
        if x.startswith("@lib:"):
            return build.build_library([os.path.join(NATIVE_DIR, x[len("@lib:"):])])
        if x.startswith("@ext:"):
            src = x[len("@ext:"):]
            return build.build_extension(it, os.path.splitext(src)[0],
                                         [os.path.join(NATIVE_DIR, src)], pybind11=True)
        return x
    if is_embed(prog):
        exe = build.build_embed(it, [os.path.join(NATIVE_DIR, script[0][len("@embed:"):])])
        return it.runner + [exe] + [native(x) for x in script[1:]]
    return it.runner + [it.executable] + flags + [os.path.join(CORPUS_DIR, script[0])] + \
        [native(x) for x in script[1:]]


def command(it, prog):
    """prog's command line on it; it.runner (qemu-user) first for a sysroot's."""
    if (it.name, prog[0]) in COMMANDS:
        return COMMANDS[(it.name, prog[0])]
    _, script, flags, _, _ = prog
    return it.runner + [it.executable] + flags + [os.path.join(CORPUS_DIR, script[0])] + \
        script[1:]


def guard_loaded(it, lib):
    """common.assert_guard_loaded, under it.runner for a sysroot's interpreter (whose
    process starts cost seconds under qemu-user)."""
    return common.assert_guard_loaded(it.executable, lib, runner=it.runner,
                                      timeout=120 if it.runner else 60)


def timeout_for(prog, guarded, a):
    """An unguarded run of a program that may hang at exit without a guard (OWN_STATUS)
    gets --hang-timeout: its hang is a baseline outcome, and waiting longer for it would
    only slow the run. A guarded run always gets --timeout: its hang is a failure."""
    if prog[0] in OWN_STATUS and not guarded:
        return a.hang_timeout + EXIT_WAIT.get(prog[0], 0.0)
    return a.timeout


def in_turn(pair, i):
    """Run i's jobs of a side pair, the side that goes first alternating from run to run:
    the batch's last job runs alone on the machine, and some exits are far slower alone
    (subinterp.py's 3.12 variant with a fixed run count: 2.2 s alone, 0.2 s beside another
    run). With a fixed order every such run was a guarded one."""
    return pair if i % 2 == 0 else pair[::-1]


def execute(jobs, n_proc):
    """jobs: list of (key, cmd, lib, guarded, timeout); results by key, in order."""
    results, done = {}, []
    step, t0 = max(1, len(jobs) // 10), time.monotonic()

    def progress(r):
        done.append(r)
        n = len(done)
        if n % step == 0 or n == len(jobs):
            return "  %d/%d runs, %.0f s" % (n, len(jobs), time.monotonic() - t0)
    for (key, _, _, _, _), r in zip(jobs, runner.execute(run_one, [j[1:] for j in jobs], n_proc,
                                                         show=progress, out=sys.stderr)):
        results.setdefault(key, []).append(r)
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", nargs="?", default="corpus", choices=["corpus", "acceptance", "baseline"])
    ap.add_argument("--lib", help="the libpyfinguard.so to test (default: tests/stress/common.py's search)")
    ap.add_argument("--runs", type=int,
                    help="runs per cell and side (corpus, default 2: the CI size), guarded runs per cell "
                         "(acceptance, default 6), unguarded runs per cell (baseline, default 20)")
    ap.add_argument("--only", nargs="*", help="interpreters whose name contains one of these")
    ap.add_argument("--programs", nargs="*", help="programs (names, of the corpus or of --exitlibs) to run")
    ap.add_argument("--exitlibs", action="store_true",
                    help="run the exit-time libraries (EXITLIBS: native libraries and embedders "
                         "whose exit needs what a late thread holds) instead of the corpus")
    ap.add_argument("--hang-timeout", type=float, default=4.0,
                    help="seconds per unguarded run of an --exitlibs program, whose hang at exit "
                         "is a baseline outcome (default 4)")
    ap.add_argument("--jobs", type=int, default=2, help="processes at a time (default 2)")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds per run (default 30)")
    ap.add_argument("--markdown", help="also write the table to this file")
    ap.add_argument("--guard-env", action="append", default=[], metavar="NAME=VALUE",
                    help="set this in the guarded runs' environment (repeatable), e.g. "
                         "PYFINGUARD_EXIT_TIMEOUT=1")
    ap.add_argument("--confirm", type=int, default=20,
                    help="when a guarded run crashed with a signal the unguarded runs did not show, "
                         "up to this many more unguarded runs look for the same crash (default 20)")
    ap.add_argument("--json", help="write every run (status, exit time, ...) to this file")
    ap.add_argument("--verbose", action="store_true", help="print every failing run's stderr")
    ap.add_argument("--sysroot", metavar="DIR",
                    help="the interpreters of another architecture's sysroot, under qemu-user "
                         "(tools/debian-env bookworm-arm64 differential)")
    a = ap.parse_args()
    if a.runs is None:
        a.runs = {"corpus": 2, "acceptance": 6, "baseline": 20}[a.mode]
    for kv in a.guard_env:
        k, sep, v = kv.partition("=")
        if not sep:
            sys.exit("--guard-env wants NAME=VALUE, not %r" % kv)
        GUARD_ENV[k] = v
    t_start = time.monotonic()

    lib = common.find_library(a.lib)
    usable, skipped_its = common.pick_interpreters(a.only, sysroot=a.sysroot)
    programs = ACCEPTANCE if a.mode == "acceptance" else EXITLIBS if a.exitlibs else CORPUS
    if a.programs:
        pool = programs if a.mode == "acceptance" else CORPUS + EXITLIBS
        programs = [p for p in pool if p[0] in a.programs]
        missing = set(a.programs) - set(p[0] for p in programs)
        if missing:
            sys.exit("unknown program(s): %s" % ", ".join(sorted(missing)))
    print("library: %s" % lib)
    for it in skipped_its:
        print("SKIP interpreter %s: %s" % (it.name, it.skip))
    cells = []
    for it, prog, why in cells_for(programs, usable):
        if not why and it.runner and prog[0] in EXECS:
            why = "starts %s programs itself (%s), which this machine runs only through %s " \
                  "(no binfmt_misc)" % (it.arch, EXECS[prog[0]], os.path.basename(it.runner[0]))
        if not why and it.runner and any(x.startswith("@lib:") for x in prog[1]):
            why = "its native library (build_library) is built for this machine only"
        cells.append((it, prog, why or static_skip(it, prog[3])))
    its = []
    for it, _, _ in cells:
        if it not in its:
            its.append(it)
    if a.mode != "baseline":
        for it in its:
            print("guard in %s: %s" % (it.name, guard_loaded(it, lib)))
    sys.stdout.flush()

    # Native parts (corpus/native): built before any run, 2 at a time (a pybind11 module
    # takes ~10 s per interpreter the first time). Unbuildable for an interpreter (no
    # libpython, pybind11 too old): a SKIP with the reason; a compile error fails the cell.
    broken = {}
    todo = [(it, prog) for it, prog, why in cells if why is None and
            any(x.startswith("@") for x in prog[1])]
    if todo:
        from pfgpy import build

        def build_one(it, prog):
            try:
                COMMANDS[(it.name, prog[0])] = build_command(it, prog)
            except build.Unsupported as e:
                broken[(it.name, prog[0])] = ("SKIP", str(e))
            except build.BuildError as e:
                broken[(it.name, prog[0])] = ("FAIL", short(str(e), 600))
        runner.execute(build_one, todo, a.jobs, show=False)
        cells = [(it, prog, broken[(it.name, prog[0])][1]
                  if broken.get((it.name, prog[0]), ("",))[0] == "SKIP" else why)
                 for it, prog, why in cells]

    # acceptance: one unguarded reference run per cell (its exit status and stdout).
    # Every mode: a program that skips itself on an interpreter (rc 77, "SKIP: reason"
    # in every unguarded run) makes its cell a SKIP.
    # The reference must be a clean run: some cells crash without the guard now and then
    # (3.10 and debian-python3.11 under -X dev: SIGSEGV at exit), so up to 5 tries.
    probes = {}
    if a.mode == "acceptance":
        todo = [(it, prog) for it, prog, why in cells if why is None]
        for _ in range(5):
            got = execute([((it.name, prog[0]), command(it, prog), lib, False, timeout_for(prog, False, a))
                           for it, prog in todo], a.jobs)
            for key, rs in got.items():
                if key not in probes or not probes[key][0].clean:
                    probes[key] = rs
            todo = [(it, prog) for it, prog in todo if not probes[(it.name, prog[0])][0].clean]
            if not todo:
                break
    live = cells

    jobs = []
    for i in range(a.runs):
        for it, prog, why in live:
            if why is not None or (it.name, prog[0]) in broken:
                continue
            cmd = command(it, prog)
            pair = []
            if a.mode in ("corpus", "baseline"):
                pair.append(((it.name, prog[0], False), cmd, lib, False, timeout_for(prog, False, a)))
            if a.mode in ("corpus", "acceptance"):
                pair.append(((it.name, prog[0], True), cmd, lib, True, timeout_for(prog, True, a)))
            jobs.extend(in_turn(pair, i))
    results = execute(jobs, a.jobs)
    # A crash some unguarded runs have too (debian-python3.11 -X dev: SIGSEGV in ~40%) is
    # not the guard's: before calling a guarded crash a difference, look for it without
    # the guard in more runs (2 at a time, stopping when every such signal has shown).
    extra = {}
    if a.mode == "corpus" and a.confirm > 0:
        for it, prog, why in live:
            if why is not None:
                continue
            key = (it.name, prog[0], False)
            base, guard = results.get(key, []), results.get((it.name, prog[0], True), [])
            want = set(g.crash_key() for g in guard) - set(b.crash_key() for b in base) - {None}
            # A guarded exit cut short by the guard's bound (the program's own status, a
            # report, stdout unlike every clean unguarded run) is judged against unguarded
            # hangs and crashes: where none showed yet (lockbus-ctypes hangs in 5 of 6 runs
            # on pyenv 3.7, and 2 runs may both be clean), look for one too.
            status = OWN_STATUS.get(prog[0])
            if status is not None:
                want = set()    # a guarded crash fails there anyway (compare)
            clean_outs = set(b.stdout for b in base if b.clean and not b.fatal_cut)
            if status is not None and not any(b.timed_out or b.crashed or b.fatal_cut for b in base) \
                    and any(g.clean and g.status == status and g.guard_lines and g.stdout not in clean_outs
                            for g in guard):
                want.add("hang or crash")
            n, limit = 0, a.confirm * rare_crash_factor(it, prog)
            while want and n < limit:
                more = execute([(key, command(it, prog), lib, False, timeout_for(prog, False, a))] * 2,
                               a.jobs)[key]
                base.extend(more)
                n += len(more)
                want -= set(b.crash_key() for b in more)
                if any(b.timed_out or b.crashed or b.fatal_cut for b in more):
                    want.discard("hang or crash")
            if n:
                extra[(it.name, prog[0])] = n
    # A slower exit suspected on a few runs a side: a cell whose exit time is bimodal
    # (pyenv 3.7 ctypes-pydll: 55 and 263 ms without the guard) fails the rule by chance
    # when both guarded runs land in the slow mode. Before calling it, take --confirm more
    # runs a side, interleaved, and judge the same rule on all of them.
    slow_checked = {}
    if a.mode == "corpus" and a.confirm > 0:
        for it, prog, why in live:
            if why is not None:
                continue
            bkey, gkey = (it.name, prog[0], False), (it.name, prog[0], True)
            base, guard = results.get(bkey, []), results.get(gkey, [])
            # (compare() times only guarded runs compared with clean unguarded ones: not
            # an exit the guard's bound cut short.)
            if not any(x.startswith("exit slower") for x in
                       compare(list(base), list(guard), OWN_STATUS.get(prog[0]))[1]):
                continue
            cmd = command(it, prog)
            pair = [(bkey, cmd, lib, False, timeout_for(prog, False, a)),
                    (gkey, cmd, lib, True, timeout_for(prog, True, a))]
            more = execute([j for i in range(a.confirm) for j in in_turn(pair, i)], a.jobs)
            base.extend(more.get(bkey, []))
            guard.extend(more.get(gkey, []))
            slow_checked[(it.name, prog[0])] = a.confirm
    if a.json:
        import json
        with open(a.json, "w") as f:
            json.dump([{"interpreter": k[0], "program": k[1], "guarded": k[2], "kind": r.kind(),
                        "exit_secs": r.exit_secs, "wall": r.wall, "guard_lines": r.guard_lines,
                        "out": r.stdout, "err": r.stderr[-4000:]}
                       for k, rs in sorted(results.items()) for r in rs], f, indent=0)

    rows, problems, n_ok, n_fail, n_skip = [], [], 0, 0, 0
    for it, prog, why in live:
        name = prog[0]
        refs = probes.get((it.name, name)) or results.get((it.name, name, False)) or []
        if why is None and refs and all(r.status == SKIP_STATUS and r.stdout.startswith("SKIP: ")
                                        for r in refs):
            why = refs[0].stdout[len("SKIP: "):].strip()
        if why is not None:
            n_skip += 1
            print("SKIP %s on %s: %s" % (name, it.name, why))
            if a.mode == "acceptance":
                rows.append([it.name, name, "-", "-", "-", "-", "SKIP: " + why])
            elif a.mode == "baseline":
                rows.append([it.name, name, "-", "-", "-", "SKIP: " + why])
            else:
                rows.append([it.name, name, "-", "-", "-", "-", "-", "-", "-", "SKIP: " + why])
            continue
        if (it.name, name) in broken:
            n_fail += 1
            problems.append("%s %s: build failed: %s" % (it.name, name, broken[(it.name, name)][1]))
            rows.append([it.name, name] + ["-"] * (3 if a.mode == "baseline" else 4 if
                                                   a.mode == "acceptance" else 7) + ["FAIL: build"])
            continue
        if a.mode == "baseline":
            base = results.get((it.name, name, False), [])
            result, reasons = compare(base, [])
            outcomes = len(set(r.outcome() for r in base))
            rows.append([it.name, name, summarize(base), outcomes,
                         fmt_times([r.exit_secs for r in base if r.exit_secs is not None and not r.timed_out]), result])
        elif a.mode == "acceptance":
            probe = probes[(it.name, name)][0]
            guard = results.get((it.name, name, True), [])
            bad = [g for g in guard if g.timed_out or g.status < 0 or g.status != probe.status or g.stdout != probe.stdout]
            hangs = sum(1 for g in guard if g.timed_out)
            sigs = sum(1 for g in guard if not g.timed_out and g.status < 0)
            result = "ok" if not bad else "FAIL"
            reasons = ["%s: %s" % (g.kind(), short(g.stderr, 240) or short(g.stdout)) for g in bad[:3]]
            gt = [g.exit_secs for g in guard if g.exit_secs is not None and not g.timed_out]
            rows.append([it.name, name, probe.kind(), "%d runs: %s" % (len(guard), summarize(guard)),
                         "%d hangs, %d signals" % (hangs, sigs), fmt_times(gt), result])
        else:
            base = results.get((it.name, name, False), [])
            guard = results.get((it.name, name, True), [])
            result, reasons = compare(base, guard, OWN_STATUS.get(name))
            same_out = all(g.stdout in set(b.stdout for b in base) for g in guard)
            same_err = all(g.outcome()[2] in set(b.outcome()[2] for b in base) for g in guard)
            bt = [r.exit_secs for r in base if r.exit_secs is not None and not r.timed_out]
            gt = [r.exit_secs for r in guard if r.exit_secs is not None and not r.timed_out]
            rows.append([it.name, name, summarize(base) + (" (%d to confirm a crash)" % extra[(it.name, name)]
                                                           if (it.name, name) in extra else "")
                         + (" (%d a side to confirm a slower exit)" % slow_checked[(it.name, name)]
                            if (it.name, name) in slow_checked else ""),
                         summarize(guard),
                         "same" if same_out else "DIFFERS", "same" if same_err else "DIFFERS",
                         sum(g.guard_lines for g in guard), fmt_times(bt), fmt_times(gt), result])
        if result.startswith("ok"):
            n_ok += 1
        else:
            n_fail += 1
            for x in reasons:
                problems.append("%s %s: %s" % (it.name, name, x))
            if a.verbose:
                for r in results.get((it.name, name, True), []) + results.get((it.name, name, False), []):
                    if r.stderr:
                        print("--- %s %s %s stderr:\n%s" % (it.name, name, r.kind(), r.stderr[-2000:]))

    if a.mode == "acceptance":
        headers = ["interpreter", "check", "without (1 run)", "with the guard",
                   "hangs/signals", "exit ms p50/p95/max", "result"]
    elif a.mode == "baseline":
        headers = ["interpreter", "program", "without", "distinct outcomes", "exit ms p50/p95/max", "result"]
    else:
        headers = ["interpreter", "program", "without", "with", "stdout", "stderr",
                   "pyfinguard lines", "exit ms without p50/p95/max", "exit ms with", "result"]
    print()
    common.table(headers, rows)
    if a.markdown:
        with open(a.markdown, "w") as f:
            common.table(headers, rows, out=f)
    print()
    print("programs:")
    for p in programs:
        print("  %-32s %s%s" % (p[0], " ".join(p[2] + p[1]), "  -- " + p[4]))
    if a.mode != "acceptance":
        # Every clean run's exit time (mark to reaping) over all cells: the figures that
        # bound how long a legitimate exit takes here (README, "Exit durations").
        for side, label in ((False, "without the guard"), (True, "with the guard")):
            ts = [r.exit_secs for k, rs in results.items() if k[2] == side
                  for r in rs if r.clean and r.exit_secs is not None]
            if ts:
                print("exit ms of %d clean runs %s, p50/p95/max: %s" % (len(ts), label, fmt_times(ts)))
    return runner.finish(problems, n_ok, n_fail, ", %d skipped" % n_skip, notes=[
        "%s, %d runs per cell%s, library %s, %.0f s" % (
            a.mode, a.runs, " and side" if a.mode == "corpus" else "", lib, time.monotonic() - t_start)])


if __name__ == "__main__":
    sys.exit(main())
