#!/usr/bin/env python3
"""dlopen's search with and without the guard (tests/nopython/README.md): every
DT_RPATH / DT_RUNPATH x path token ($ORIGIN, $LIB, $PLATFORM, braced) x LD_LIBRARY_PATH
case (and a glibc-hwcaps subdirectory), the caller being the executable or a library, RTLD_DEEPBIND, a dlmopen namespace
and an already-loaded soname. Each case prints the path dlopen resolved (dlinfo's
link_map) or dlerror()'s text; the two runs must print the same, and the guarded one must
have the guard in it. Needs gcc."""
import argparse
import itertools
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), 'tools'))
from pfgpy import env as scrub, interpreters  # noqa: E402
TOKENS = {  # a DT_RPATH / DT_RUNPATH entry, relative to the prefix's bin/ (the caller's origin)
    'origin': '$ORIGIN/../plain',
    'lib': '$ORIGIN/../$LIB',
    'platform': '$ORIGIN/../$PLATFORM',
    'braced': '${ORIGIN}/../${LIB}',
    'two': '$ORIGIN/../none:$ORIGIN/../plain',
}


# The library every case looks for. Its constructor runs inside dlopen and unwinds from
# there: with the guard that walk crosses the return gadget and pfg_dlopen_via
# (shim/dlopen/), whose unwind information must lead on to the caller's main (exported
# with -rdynamic), as it does without the guard.
X_SRC = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <execinfo.h>
#include <stdio.h>
#include <string.h>
int dlsearch_x(void) { return 1; }
__attribute__((constructor)) static void unwind_to_main(void) {
  void *pc[128];
  int n = backtrace(pc, 128), found = 0;
  for (int i = 0; i < n; i++) {
    Dl_info d;
    if (dladdr(pc[i], &d) && d.dli_sname && strcmp(d.dli_sname, "main") == 0) found = 1;
  }
  printf("constructor: its backtrace %s main\n", found ? "reaches" : "does not reach");
}
"""


def sh(*argv, **kw):
    subprocess.run(argv, check=True, **kw)


def env_clean():
    return scrub.scrubbed(python=None, drop=('LD_LIBRARY_PATH', 'LD_DEBUG'))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--lib', required=True)
    ap.add_argument('--sysroot', help='an arm64 sysroot (tools/debian-env bookworm-arm64|trixie-arm64 '
                    'path): programs are built with --cc and run under qemu-user -L SYSROOT')
    ap.add_argument('--cc', help='the C compiler (default gcc; with --sysroot, the sysroot\'s cross gcc, '
                    'aarch64-linux-gnu-gcc)')
    ap.add_argument('--cflags', default='', help='extra compiler flags for every program and library '
                    '(-mbranch-protection=standard: callers whose epilogues authenticate)')
    args = ap.parse_args()
    via, triplet = [], None
    if args.sysroot:
        via, triplet, why = interpreters.sysroot_runner(args.sysroot)
        if via is None:
            print(f'SKIP: {why}')
            return 77
    cc = shutil.which(args.cc or (triplet + '-gcc' if triplet else 'gcc')) or \
        (not args.cc and not triplet and shutil.which('cc'))
    if not cc:
        print('SKIP: no C compiler')
        return 77
    cc = [cc] + args.cflags.split()
    lib = os.path.abspath(args.lib)
    src = os.path.join(HERE, 'dlsearch.c')
    failures = 0
    with tempfile.TemporaryDirectory(prefix='pfg-dlsearch-') as tmp:
        xsrc = os.path.join(tmp, 'x.c')
        with open(xsrc, 'w') as f:
            f.write(X_SRC)
        # Where a libx.so lives: one copy per candidate directory of the tokens, one in the
        # LD_LIBRARY_PATH directory, none in the system directories.
        prefix = os.path.join(tmp, 'p')
        # ld.so's own expansions of $LIB and $PLATFORM ("lib/x86_64-linux-gnu", "haswell"
        # here), read from LD_DEBUG of a tiny program whose RUNPATH has them, not guessed.
        probe_c = os.path.join(tmp, 'probe.c')
        with open(probe_c, 'w') as f:
            f.write('#include <dlfcn.h>\nint main(void) { dlopen("libpfg-none.so", 2); return 0; }\n')
        probe = os.path.join(tmp, 'probe')
        sh(*cc, '-o', probe, probe_c, '-Wl,--enable-new-dtags,-rpath,/pfgL/$LIB:/pfgP/$PLATFORM', '-ldl')
        dbg = subprocess.run(via + [probe], env=dict(env_clean(), LD_DEBUG='libs'), capture_output=True, text=True).stderr
        # (ld.so tries those directories for the program's own libc.so.6 at start.)
        trying = [l.split('file=', 1)[1].rsplit('/', 1)[0] for l in dbg.splitlines() if 'trying file=/pfg' in l]

        def expansion(mark):
            # The last candidate tried under the mark is the directory itself (the
            # glibc-hwcaps and legacy subdirectories come first).
            c = [t[len(mark):] for t in trying if t.startswith(mark)]
            return c[-1] if c else None
        dirs = {'plain': 'plain', 'env': 'env', 'lib': expansion('/pfgL/'), 'platform': expansion('/pfgP/')}
        if not dirs['lib'] or not dirs['platform']:
            print(f'FAIL cannot read ld.so\'s $LIB / $PLATFORM from LD_DEBUG: {dirs}')
            return 1
        print(f'$LIB={dirs["lib"]} $PLATFORM={dirs["platform"]}')
        for d in dirs.values():
            os.makedirs(os.path.join(prefix, d), exist_ok=True)
            sh(*cc, '-shared', '-fPIC', '-Wl,-soname,libx.so.1', '-o', os.path.join(prefix, d, 'libx.so'), xsrc)
        # glibc also tries the glibc-hwcaps subdirectories of each directory first.
        if not args.sysroot:  # (aarch64's glibc has no subdirectory a baseline CPU takes)
            hw = os.path.join(prefix, 'plain', 'glibc-hwcaps', 'x86-64-v2')
            os.makedirs(hw)
            sh(*cc, '-shared', '-fPIC', '-Wl,-soname,libx.so.1', '-o', os.path.join(hw, 'libx.so'), xsrc)
        os.makedirs(os.path.join(prefix, 'bin'))
        os.makedirs(os.path.join(prefix, 'callerlib'))
        env_base = env_clean()
        env_base['LC_ALL'] = 'C'
        guard_env = dict(env_base, LD_PRELOAD=lib)
        n = 0
        for (tname, entry), tag in itertools.product(TOKENS.items(), ('rpath', 'runpath')):
            new_dtags = '--enable-new-dtags' if tag == 'runpath' else '--disable-new-dtags'
            exe = os.path.join(prefix, 'bin', f'dls-{tname}-{tag}')
            clib = os.path.join(prefix, 'callerlib', f'libdlsearch-{tname}-{tag}.so')
            # The library caller's origin is callerlib/, a sibling of bin/: the same
            # relative entries resolve to the same directories.
            sh(*cc, '-shared', '-fPIC', '-DDLSEARCH_LIB', '-o', clib, src,
               f'-Wl,{new_dtags},-rpath,{entry}', '-ldl')
            # The executable finds its library by absolute RUNPATH (never searched by the
            # library's dlopen, which uses the library's own list).
            sh(*cc, '-rdynamic', '-o', exe, src, f'-Wl,{new_dtags},-rpath,{entry}', '-Wl,--no-as-needed', clib, '-ldl')
            for caller, ldp, mode in itertools.product(('exe', 'lib'), (None, 'env'), ('now', 'deepbind', 'dlmopen')):
                argv = [exe] + (['lib'] if caller == 'lib' else []) + [mode, 'libx.so', 'libpfg-none.so']
                env0 = dict(env_base)
                if ldp:
                    env0['LD_LIBRARY_PATH'] = os.path.join(prefix, 'env') + ':' + os.path.join(prefix, 'bin')
                outs = []
                for env in (env0, dict(env0, LD_PRELOAD=lib)):
                    p = subprocess.run(via + argv, env=env, capture_output=True)
                    outs.append((p.returncode, p.stdout, p.stderr))
                n += 1
                label = f'{tname:8s} {tag:7s} caller={caller} LD_LIBRARY_PATH={"set" if ldp else "unset"} {mode}'
                if outs[0] != outs[1]:
                    failures += 1
                    print(f'FAIL {label}\n  without: {outs[0]!r:.500}\n  with:    {outs[1]!r:.500}')
                elif os.environ.get('DLSEARCH_VERBOSE'):
                    print(f'PASS {label}: {outs[0][1].decode().strip()!r}')
        # An already-loaded soname: opened by path, then by soname from a caller whose
        # list does not contain it.
        exe = os.path.join(prefix, 'bin', 'dls-origin-runpath')
        argv = [exe, 'now', os.path.join(prefix, 'env', 'libx.so'), 'libx.so.1', 'libx.so']
        outs = [subprocess.run(via + argv, env=e, capture_output=True) for e in (env_base, guard_env)]
        n += 1
        if (outs[0].returncode, outs[0].stdout, outs[0].stderr) != (outs[1].returncode, outs[1].stdout, outs[1].stderr):
            failures += 1
            print(f'FAIL soname\n  without: {outs[0].stdout!r}\n  with:    {outs[1].stdout!r}')
        # The guard must be in the guarded runs, or the comparison proves nothing.
        cat = [os.path.join(args.sysroot, 'usr/bin/cat')] if args.sysroot else ['cat']
        chk = subprocess.run(via + cat + ['/proc/self/maps'], env=guard_env, capture_output=True, text=True)
        if os.path.basename(os.path.realpath(lib)) not in chk.stdout:
            print('FAIL the guard is not in the guarded processes')
            return 1
    print(f'dlsearch: {n} cases, {failures} differ' if failures else f'dlsearch: {n} cases, all identical')
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
