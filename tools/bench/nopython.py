#!/usr/bin/env python3
"""What the guard costs a program that never loads Python (docs/performance.md, "Where
Python is absent"): a condition-variable ping-pong through pthread_cond_timedwait, a
create/join loop, a dlopen/dlclose loop and the start-up of a small C program
(tools/bench/nopython.c), each without and with LD_PRELOAD=<guard>.

Two figures per case: instructions (callgrind totals, deterministic: the primary figure)
and time (the median over rounds of the per-round ratio, the two sides alternating which
goes first, the process pinned to one CPU). A benchmark, not a test: it exits 0 and prints
a "TARGET MISSED" line per ratio above the goal (1.01)."""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
GOAL = 1.01
# case: (argv tail for timing, callgrind's two loop lengths). Instructions per operation
# = (total(n2) - total(n1)) / (n2 - n1): start-up and exit cancel; 'start' is the total.
CASES = {
    'pingpong': (['pingpong', '20000'], (1000, 2000)),
    'pingpong-wait': (['pingpong-wait', '20000'], (1000, 2000)),
    'join': (['join', '2000'], (100, 200)),
    'dlopen': (['dlopen', '300'], (20, 40)),
    'start': (['start'], None),
}


def env_with(preload):
    env = {k: v for k, v in os.environ.items() if k != 'LD_PRELOAD' and not k.startswith('PYFINGUARD')}
    if preload:
        env['LD_PRELOAD'] = preload
    return env


def instructions(prog, tail, preload):
    p = subprocess.run(['valgrind', '--tool=callgrind', '--callgrind-out-file=/dev/null', prog] + tail,
                       env=env_with(preload), capture_output=True, text=True)
    m = re.search(r'Collected : (\d+)', p.stderr)
    return int(m.group(1)) if m else None


def timed(prog, tail, preload, starts):
    """ns per operation as the program reports it; for 'start', the wall time of
    `starts` sequential runs, per run."""
    env = env_with(preload)
    if tail == ['start']:
        t0 = time.perf_counter_ns()
        for _ in range(starts):
            subprocess.run([prog, 'start'], env=env, check=True)
        return (time.perf_counter_ns() - t0) / starts
    out = subprocess.run([prog] + tail, env=env, capture_output=True, text=True, check=True).stdout
    return float(out.split()[0])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--lib', default=os.path.join(REPO, 'build', 'shim', 'libpyfinguard.so'))
    ap.add_argument('--rounds', type=int, default=15)
    ap.add_argument('--starts', type=int, default=50, help='runs per round of the start-up case')
    ap.add_argument('--only', action='append', choices=sorted(CASES))
    ap.add_argument('--cpu', type=int, default=0, help='CPU to pin to (-1: none)')
    args = ap.parse_args()
    lib = os.path.abspath(args.lib)
    if not os.path.exists(lib):
        print(f'nopython.py: {lib} not found (meson setup build && ninja -C build)')
        return 0
    if args.cpu >= 0:
        os.sched_setaffinity(0, {args.cpu})
    with tempfile.TemporaryDirectory(prefix='pfg-bench-nopython-') as tmp:
        prog = os.path.join(tmp, 'nopython')
        subprocess.run(['cc', '-O2', '-o', prog, os.path.join(HERE, 'nopython.c'), '-lpthread', '-ldl'], check=True)
        have_vg = subprocess.run(['sh', '-c', 'command -v valgrind'], capture_output=True).returncode == 0
        rows = []
        for name, (ttail, ctail) in CASES.items():
            if args.only and name not in args.only:
                continue
            ir = (None, None)
            if have_vg and ctail is None:
                ir = (instructions(prog, ['start'], None), instructions(prog, ['start'], lib))
            elif have_vg:
                n1, n2 = ctail
                ir = tuple((instructions(prog, [name, str(n2)], o) - instructions(prog, [name, str(n1)], o)) / (n2 - n1)
                           for o in (None, lib))
            ratios, raw, grd = [], [], []
            for r in range(args.rounds):
                order = (None, lib) if r % 2 == 0 else (lib, None)
                got = {o: timed(prog, ttail, o, args.starts) for o in order}
                raw.append(got[None])
                grd.append(got[lib])
                ratios.append(got[lib] / got[None])
            rows.append((name, ' '.join(ttail), statistics.median(raw), statistics.median(grd),
                         statistics.median(ratios), ir))
    print(f'library: {lib}; {args.rounds} rounds, pinned to CPU {args.cpu}; load average {os.getloadavg()[0]:.2f}')
    print(f'{"case":13s} {"timed":19s} {"raw ns/op":>11s} {"guard ns/op":>12s} {"time ratio":>10s} '
          f'{"raw instr/op":>12s} {"guard instr/op":>14s} {"instr ratio":>11s}')
    missed = []
    for name, tail, raw, grd, ratio, (i0, i1) in rows:
        ir = i1 / i0 if i0 and i1 else None
        print(f'{name:13s} {tail:19s} {raw:11.1f} {grd:12.1f} {ratio:10.3f} '
              f'{f"{i0:.0f}" if i0 else "-":>12} {f"{i1:.0f}" if i1 else "-":>14} {f"{ir:.3f}" if ir else "-":>11}')
        if ratio > GOAL:
            missed.append(f'{name}: time ratio {ratio:.3f} > {GOAL}')
        if ir and ir > GOAL:
            missed.append(f'{name}: instruction ratio {ir:.3f} > {GOAL}')
    for m in missed:
        print(f'TARGET MISSED: {m}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
