#!/usr/bin/env python3
"""Programs that never load Python, run without and with the guard: stdout, stderr and
exit status must be the same (tests/nopython/README.md). Exit 0 when every case matches,
1 when one differs (each difference is printed), 77 (meson's skip) when the guard's
preload did not take effect... never: that is a failure too, since the comparison would
then prove nothing."""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), 'tools'))
from pfgpy import env as scrub, interpreters, run as pfgrun  # noqa: E402

# Fixed identities and dates, so that git's hashes and tar's listings do not depend on
# the run.
GIT_ENV = {
    'GIT_AUTHOR_NAME': 'A U Thor', 'GIT_AUTHOR_EMAIL': 'author@example.com',
    'GIT_COMMITTER_NAME': 'C O Mitter', 'GIT_COMMITTER_EMAIL': 'committer@example.com',
    'GIT_AUTHOR_DATE': '2005-04-07T22:13:13Z', 'GIT_COMMITTER_DATE': '2005-04-07T22:13:13Z',
    'GIT_CONFIG_NOSYSTEM': '1',
}

C_SRC = '#include <stdio.h>\nint main(void) { printf("c %d\\n", 6 * 7); return 0; }\n'
CXX_SRC = ('#include <iostream>\n#include <thread>\n#include <vector>\n'
           'int main() { std::vector<std::thread> t; int s[4] = {0};\n'
           '  for (int i = 0; i < 4; ++i) t.emplace_back([&s, i] { s[i] = i * i; });\n'
           '  for (auto &x : t) x.join();\n'
           '  std::cout << "c++ " << s[0] + s[1] + s[2] + s[3] << std::endl; }\n')
BAD_SRC = 'int main(void) { return undeclared_name; }\n'


def sysroot_cases(args):
    """An arm64 sysroot's programs under qemu-user: one process each (qemu-user without
    binfmt_misc cannot start a child program, so no shell pipelines)."""
    b = lambda name: os.path.join(args.sysroot, 'usr', 'bin', name)
    yield 'sha256sum', [b('sha256sum'), '/etc/os-release', '/etc/nonexistent'], ()
    yield 'date', [b('date'), '-u', '-d', '@0'], ()
    yield 'expr', [b('expr'), '6', '*', '7'], ()
    yield 'ls', [b('ls'), '-l', '--time-style=+%s', '/usr/lib/os-release', '/nonexistent'], ()
    yield 'bash', [b('bash'), '--norc', '-c', 'x=$((6 * 7)); echo "bash $x"; printf "%05d\\n" 42; exit 3'], ()
    yield from program_cases(args)


def program_cases(args):
    """The programs built from this folder."""
    yield 'cxx-threads', [args.cxx], ()
    if args.old_condvar:
        yield 'old-condvar', [args.old_condvar], ()
    yield 'probe', [args.probe, 'probe'], ()
    yield 'probe-and-call', [args.probe, 'call'], ()
    if args.libpython:
        yield 'probe-then-load', [args.probe, 'load', args.libpython], ()


def cases(args):
    """(name, argv, needs): each runs in a fresh copy of the same work directory."""
    if args.sysroot:
        yield from sysroot_cases(args)
        return
    sh = ['/bin/sh', '-c']
    yield 'coreutils', sh + [
        'seq 1 20000 | sort -r | sha256sum; printf "b\\na\\nc\\n" | sort | tr a-z A-Z; '
        'date -u -d @0; expr 6 \\* 7; mkdir d && touch -d @0 d/f && ls -l --time-style=+%s d | wc -l; '
        'cp d/f d/g && mv d/g d/h && rm d/h && ls d; cat /nonexistent; echo "status $?"; '
        'head -c 1000 /dev/zero | od -An -c | uniq | wc -l; env -i /usr/bin/env; nproc >/dev/null'], ()
    yield 'git', sh + [
        'git init -q -b main repo && cd repo && echo one > f && git add f && git commit -q -m first && '
        'echo two >> f && git commit -q -am second && git log --format="%H %s" && git status --short && '
        'git diff HEAD~1 --stat && git rev-parse HEAD && git show --stat HEAD~1 | head -5 && '
        'git checkout -q -b topic && git merge -q main && git branch --list && git no-such-command; '
        'echo "status $?"'], ('git',)
    yield 'perl', sh + [
        'perl -MPOSIX -e \'print join(",", map { $_ * $_ } 1 .. 10), "\\n"; print POSIX::floor(3.7), "\\n"; '
        'my %h = (b => 2, a => 1); print join(" ", map {"$_=$h{$_}"} sort keys %h), "\\n"\'; '
        'perl -e \'die "dying on purpose\\n"\'; echo "status $?"; perl -e \'print "$]\\n"\' >/dev/null'], ('perl',)
    yield 'gcc', sh + [
        'printf %s "$C" > h.c && gcc -O2 -Wall -o h h.c && ./h && printf %s "$CXX" > h.cc && '
        'g++ -O2 -pthread -o hx h.cc && ./hx && printf %s "$BAD" > bad.c; gcc -c bad.c; echo "status $?"'], ('gcc', 'g++')
    yield 'tar-gzip', sh + [
        'mkdir -p t/sub && seq 1 500 > t/a && echo x > t/sub/b && '
        'tar --mtime=@0 --owner=0 --group=0 --numeric-owner --sort=name -cf t.tar t && '
        'gzip -9 -n -c t.tar > t.tgz && sha256sum t.tar && gzip -dc t.tgz | tar -tvf - && '
        'mkdir u && tar -xzf t.tgz -C u && diff -r t u/t && echo same && gzip -t t.tgz && '
        'gzip -dc /etc/hostname; echo "status $?"'], ('tar', 'gzip')
    yield 'dpkg-query', ['dpkg-query', '-W', '-f=${Package} ${Status}\\n', 'dpkg', 'coreutils',
                         'no-such-package-pfg'], ('dpkg-query',)
    yield from program_cases(args)


VIA = []  # with --sysroot, its runner prefix (qemu-user -L SYSROOT)


def run(argv, cwd, env, timeout):
    """(status, stdout, stderr) as bytes; status 'hang' when the timeout killed it."""
    r = pfgrun.run(VIA + argv, env, timeout, cwd, stdin=subprocess.DEVNULL, text=False)
    return 'hang' if r.timed_out else r.status, r.stdout, r.stderr


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--lib', required=True, help='libpyfinguard.so')
    ap.add_argument('--probe', required=True, help='the probe program (probe.c)')
    ap.add_argument('--cxx', required=True, help='the C++ program (cxx_threads.cc)')
    ap.add_argument('--old-condvar', help='the pre-2.3.2 condition variable program '
                    '(old_condvar.c; x86-64 only)')
    ap.add_argument('--libpython', default='/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0',
                    help='a shared libpython for the probe-then-load cases ("" to leave them out)')
    ap.add_argument('--sysroot', help='an arm64 sysroot (tools/debian-env ENV nopython): its '
                    'programs and --probe/--cxx, cross-built, run under qemu-user -L SYSROOT; '
                    '--libpython is then a path inside it')
    ap.add_argument('--only', action='append', help='case names to run')
    ap.add_argument('--timeout', type=float, default=60)
    args = ap.parse_args()
    cat = ['cat']
    if args.sysroot:
        runner, _, why = interpreters.sysroot_runner(args.sysroot)
        if runner is None:
            print(f'SKIP: {why}')
            return 77
        args.sysroot = os.path.abspath(args.sysroot)
        VIA[:] = runner
        cat = [os.path.join(args.sysroot, 'usr', 'bin', 'cat')]
    if args.libpython and not os.path.exists((args.sysroot or '') + args.libpython):
        print(f'SKIP probe-then-load, late-load: {args.libpython} not found')
        args.libpython = ''
    lib = os.path.abspath(args.lib)
    args.probe, args.cxx = os.path.abspath(args.probe), os.path.abspath(args.cxx)
    if args.old_condvar:
        args.old_condvar = os.path.abspath(args.old_condvar)
    base = scrub.scrubbed(python=None)
    base.update(GIT_ENV, LC_ALL='C', TZ='UTC', C=C_SRC, CXX=CXX_SRC, BAD=BAD_SRC)
    guarded = dict(base, LD_PRELOAD=lib)
    failures = 0

    # The preload must take effect, or every comparison below proves nothing.
    _, out, err = run([args.probe, 'guard'], '/', guarded, args.timeout)
    if out.strip() != b'guard: yes':
        print(f'FAIL the guard is not in the guarded process: {out!r} {err!r}')
        return 1

    # Nothing but the guard itself is mapped into a process without Python: its
    # dependencies (libunwind for park reports, Zydis for entry patches) are loaded only
    # when a runtime is taken over.
    _, plain_maps, _ = run(cat + ['/proc/self/maps'], '/', base, args.timeout)
    _, maps, _ = run(cat + ['/proc/self/maps'], '/', guarded, args.timeout)
    objs = lambda m: {l.split()[-1] for l in m.decode().splitlines() if '.so' in l.split()[-1]}
    extra = {os.path.basename(o) for o in objs(maps) - objs(plain_maps)}
    if extra != {os.path.basename(os.path.realpath(lib))}:
        failures += 1
        print(f'FAIL maps: a process without Python maps {sorted(extra)} besides what it maps itself '
              '(expected only the guard)')
    else:
        print(f'PASS maps             only {", ".join(sorted(extra))} added to a process without Python')

    with tempfile.TemporaryDirectory(prefix='pfg-nopython-') as tmp:
        work = os.path.join(tmp, 'w')
        home = os.path.join(tmp, 'home')
        os.makedirs(home)
        for env in (base, guarded):
            env['HOME'] = home
        for name, argv, needs in cases(args):
            if args.only and name not in args.only:
                continue
            missing = [n for n in needs if not shutil.which(n)]
            if missing:
                print(f'SKIP {name}: {" ".join(missing)} not installed (tools/setup installs it)')
                continue
            t0 = time.monotonic()
            got = []
            for env in (base, guarded):
                shutil.rmtree(work, ignore_errors=True)
                os.makedirs(work)
                got.append(run(argv, work, env, args.timeout))
            (rc0, o0, e0), (rc1, o1, e1) = got
            dt = time.monotonic() - t0
            if got[0] == got[1]:
                print(f'PASS {name:16s} status {rc0}, {len(o0)} bytes out, {len(e0)} bytes err ({dt:.1f} s)')
                continue
            failures += 1
            print(f'FAIL {name}: without / with the guard differ')
            for what, a, b in (('status', rc0, rc1), ('stdout', o0, o1), ('stderr', e0, e1)):
                if a != b:
                    print(f'  {what} without: {a!r:.600}\n  {what} with:    {b!r:.600}')

        # The late-loaded runtime is still taken over: a native thread's first
        # PyGILState_Ensure after Py_FinalizeEx parks (with the guard only: without it the
        # thread would crash the process, which is what the guard is for).
        if args.libpython and (not args.only or 'late-load' in args.only):
            rc, out, err = run([args.probe, 'late', args.libpython], '/', guarded, args.timeout)
            if rc == 0 and out.rstrip().endswith(b'\nparked'):
                print('PASS late-load        a late native PyGILState_Ensure parked')
            else:
                failures += 1
                print(f'FAIL late-load: status {rc}, stdout tail {out[-300:]!r}, stderr {err[-600:]!r}')
    print(f'nopython: {"all identical" if not failures else f"{failures} failed"}')
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
