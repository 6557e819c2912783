#!/usr/bin/env python3
"""Instructions per PyEval_SaveThread/RestoreThread pair, entries patched or not.

Usage: bench_patch_pair.py BENCH_PATCH_PAIR [LIBPYTHON]
Counts instructions with callgrind at 100,000 and 200,000 pairs, for each of patched and
unpatched, and prints the per-pair difference (start-up cancels out). Deterministic:
callgrind counts instructions, not time. Not a test; docs/patching.md quotes its output.
"""
import os
import re
import subprocess
import sys

bench = sys.argv[1]
lib = sys.argv[2] if len(sys.argv) > 2 else "/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0"


def count(pairs, patch):
    # setarch -R: no address randomization, so both runs see the same layout (steadier counts)
    p = subprocess.run(["setarch", "-R", "valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", bench, lib,
                        str(pairs), str(patch)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True, env=dict(os.environ, PYTHONHASHSEED="0"))
    m = re.search(r"refs:\s+([\d,]+)", p.stderr)
    if p.returncode != 0 or not m:
        sys.exit("bench failed: " + p.stderr[-500:])
    return int(m.group(1).replace(",", ""))


per = {}
for patch in (0, 1):
    a, b = count(100000, patch), count(200000, patch)
    per[patch] = (b - a) / 100000.0
print("library: %s" % lib)
print("instructions per SaveThread/RestoreThread pair: unpatched %.1f, patched (forwarding hook) %.1f, "
      "patch costs %.1f per pair" % (per[0], per[1], per[1] - per[0]))
