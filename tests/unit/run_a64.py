#!/usr/bin/env python3
"""Run the aarch64 patcher's unit test (test_patch_a64, cross-compiled) under
qemu-aarch64-static; exit 77 (SKIP) with the reason when the cross compiler or qemu is
missing. With --mutant, run the build whose relocator copies ADRP and CBZ unchanged
(-DPFG_A64_RELOC_MUTANT) and pass only if the test fails and names both classes.

usage: run_a64.py QEMU TEST [--mutant]   (QEMU or TEST empty: not found at configure time)
"""
import os
import resource
import subprocess
import sys


def main():
    qemu, test = sys.argv[1], sys.argv[2]
    mutant = '--mutant' in sys.argv[3:]
    if not test or not os.path.exists(test):
        print('SKIP: aarch64-linux-gnu-g++ not found (apt-get install g++-aarch64-linux-gnu)')
        return 77
    if not qemu:
        print('SKIP: qemu-aarch64-static not found (apt-get install qemu-user-static)')
        return 77
    p = subprocess.run([qemu, test], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       universal_newlines=True, timeout=600,
                       preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_CORE, (0, 0)))
    out = p.stdout
    if not mutant:
        sys.stdout.write(out)
        return p.returncode
    fails = [l for l in out.splitlines() if l.startswith('FAIL: ')]
    caught = {c: any(l.startswith('FAIL: ' + c) for l in fails) for c in ('adrp', 'cbz')}
    print('mutant exit status %d, %d failed checks; adrp caught: %s, cbz caught: %s'
          % (p.returncode, len(fails), caught['adrp'], caught['cbz']))
    for l in fails[:8]:
        print('  ' + l)
    if p.returncode != 0 and all(caught.values()):
        print('mutant: the tests caught the broken relocator')
        return 0
    print('mutant: the broken relocator was NOT caught')
    sys.stdout.write(out)
    return 1


if __name__ == '__main__':
    sys.exit(main())
