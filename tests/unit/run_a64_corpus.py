#!/usr/bin/env python3
"""The corpus test on arm64 (docs/patching.md, "aarch64", "Tests"): every exported
function of Debian's arm64 static python3.X patched by the aarch64 patcher (the corpus
library, tests/unit/corpus_patch.cc, cross-compiled with it), then Python run through the
patches under qemu-aarch64-static; its output must equal the unpatched run's.

usage: run_a64_corpus.py QEMU LIBPFGCORPUS_A64 SCRIPT [--mutant]
       run_a64_corpus.py QEMU TEST_PATCH_A64_BTI --bti
With --mutant the library is built with the broken relocator (-DPFG_A64_RELOC_MUTANT:
ADRP and CBZ copied unchanged), and the test passes only if every image's patched run
then fails while its unpatched run works.
Sysroots: $PFG_A64_SYSROOTS (colon-separated), else the ones tools/debian-env caches
(${PFG_DEBIAN_CACHE:-/var/cache/pyfinguard}/*-arm64-*/). Exit 77 (SKIP) with the reason
when qemu, the library or every sysroot is missing.
"""
import glob
import json
import os
import resource
import subprocess
import sys
import tempfile


def sysroots():
    env = os.environ.get('PFG_A64_SYSROOTS')
    if env:
        return [d for d in env.split(':') if d]
    cache = os.environ.get('PFG_DEBIAN_CACHE') or os.environ.get('PFG_SID_CACHE') or '/var/cache/pyfinguard'
    return sorted(d for d in glob.glob(os.path.join(cache, '*-arm64-*')) if os.path.isdir(d))


def pythons(root):
    exes = glob.glob(os.path.join(root, 'usr/bin/python3.[0-9]*'))
    return sorted(e for e in exes if os.path.basename(e).replace('python', '').replace('.', '').isdigit())


def no_core():
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # the mutant's crashes leave no core files


def run(qemu, root, exe, script, env):
    cmd = [qemu, '-L', root]
    for k, v in env.items():
        cmd += ['-E', '%s=%s' % (k, v)]
    p = subprocess.run(cmd + [exe, script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       universal_newlines=True, timeout=600, preexec_fn=no_core)
    return p.returncode, p.stdout


def bti(qemu, probe):
    """test_patch_a64_bti in every sysroot: passes where libc's text is BTI-guarded."""
    checked = bad = 0
    for root in sysroots():
        p = subprocess.run([qemu, '-L', root, probe], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           universal_newlines=True, timeout=300, preexec_fn=no_core)
        print('%-30s %s' % (os.path.basename(root.rstrip('/')), p.stdout.strip()))
        if p.returncode != 77:
            checked += 1
            bad += p.returncode != 0
    if not checked:
        print('SKIP: no sysroot whose libc is BTI-guarded under qemu (Debian 13 arm64: tools/debian-env trixie-arm64)')
        return 77
    return 1 if bad else 0


def main():
    if '--bti' in sys.argv:
        if not sys.argv[1] or not os.path.exists(sys.argv[2] or '/nonexistent'):
            print('SKIP: qemu-aarch64-static or aarch64-linux-gnu-g++ not found')
            return 77
        return bti(sys.argv[1], sys.argv[2])
    qemu, lib, script = sys.argv[1:4]
    mutant = '--mutant' in sys.argv[4:]
    if not qemu:
        print('SKIP: qemu-aarch64-static not found (apt-get install qemu-user-static)')
        return 77
    if not lib or not os.path.exists(lib):
        print('SKIP: aarch64-linux-gnu-g++ not found (apt-get install g++-aarch64-linux-gnu)')
        return 77
    cases = [(r, e) for r in sysroots() for e in pythons(r)]
    if not cases:
        print('SKIP: no arm64 sysroot with python3.X (tools/debian-env bookworm-arm64 build, or set PFG_A64_SYSROOTS)')
        return 77
    bad = 0
    for root, exe in cases:
        name = '%s %s' % (os.path.basename(root.rstrip('/')), os.path.basename(exe))
        rc0, out0 = run(qemu, root, exe, script, {})
        if rc0 != 0:
            print('%-45s unpatched run failed (%d): %s' % (name, rc0, out0[-300:]))
            bad += 1
            continue
        with tempfile.TemporaryDirectory() as tmp:
            js = os.path.join(tmp, 'report.json')
            rc1, out1 = run(qemu, root, exe, script, {'LD_PRELOAD': os.path.abspath(lib),
                                                      'PFG_CORPUS_PRELOAD': '1', 'PFG_CORPUS_OUT': js})
            rep = json.load(open(js)) if os.path.exists(js) else None
        if mutant:
            caught = rc1 != 0 or out1 != out0
            print('%-45s mutant: patched run %s' % (name, 'failed (exit %d), as it must' % rc1 if caught
                                                    else 'gave the same output: NOT caught'))
            bad += not caught
            continue
        problems = []
        if rc1 != 0 or out1 != out0:
            problems.append('patched run differs (exit %d): %s' % (rc1, out1[-300:]))
        if not rep:
            problems.append('no report')
        else:
            if rep['disagree']:
                problems.append('check/install disagree: ' + rep['disagree_example'])
            missing = [k for k, v in rep['must'].items() if v not in ('patched', 'absent')]
            if missing:
                problems.append('guard functions not patched: %s' % missing)
            if rep['calls_through_patches'] == 0:
                problems.append('no call went through a patch')
        if rep:
            print('%-45s %d functions, %d patched, %d refused, %d called through patches (%d calls), '
                  'guard functions %d/%d patched, %s'
                  % (name, rep['functions'], rep['patched'], rep['refused'], rep['called_patched'],
                     rep['calls_through_patches'],
                     sum(v == 'patched' for v in rep['must'].values()),
                     sum(v != 'absent' for v in rep['must'].values()),
                     'same output' if not problems else 'FAILED'))
            for r in rep['reasons']:
                print('    %5d  %s   e.g. %s' % (r['count'], r['reason'], r['example']))
        for p in problems:
            print('    ' + p)
        bad += bool(problems)
    if mutant:
        print('mutant: %d of %d images caught the broken relocator' % (len(cases) - bad, len(cases)))
    return 1 if bad else 0


if __name__ == '__main__':
    sys.exit(main())
