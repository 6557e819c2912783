#!/usr/bin/env python3
"""Bad input in every PYFINGUARD_* variable: the host runs and exits with its own status,
with one warning line at most.

    tests/stress/stress.py badinput

Variables: PYFINGUARD_MODE, PYFINGUARD_LOG, PYFINGUARD_QUIET, PYFINGUARD_PATCH. Values:
empty; garbage (bytes 0x01-0xff with escape sequences and newlines: no NUL, which an
environment cannot hold); a word that is almost right ("Park", "stderr " ...); a log path in
a directory that does not exist; the largest value execve(2) accepts (one environment
string is limited to MAX_ARG_STRLEN = 128 KiB by the kernel: a 1 MiB value cannot reach
any program, the harness records that E2BIG); and all variables garbage at once.
Hosts: /bin/true, sh -c 'exit 3', ls -la on files nobody changes, gcc --version, pyenv 3.11 and Debian's static python3.11
(print, exit 5), and Debian python3.11 with a late native thread that the guard parks
(pfgstress.late_at_exit, exit 5).
Per cell, compared with the same host without the guard: same exit status, same stdout, and
stderr equal to the unguarded stderr plus at most one line "pyfinguard: warning: ..." that
holds no control character (--strict: also for the reported bug marked KNOWN below).
(The parking host is compared with a guarded run with no
PYFINGUARD_* set, since without the guard it crashes.)
"""
import errno
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

VARS = ["PYFINGUARD_MODE", "PYFINGUARD_LOG", "PYFINGUARD_QUIET", "PYFINGUARD_PATCH"]
MAX_ARG_STRLEN = 32 * 4096


def values(var):
    garbage = bytes(range(1, 256)) + b"\x1b[31mred\x1b[0m\nsecond line\r\x07"
    vals = [("empty", b""), ("garbage", garbage),
            ("almost", {"PYFINGUARD_MODE": b"Park", "PYFINGUARD_LOG": b"stderr ",
                        "PYFINGUARD_QUIET": b"1 ", "PYFINGUARD_PATCH": b"AUTO"}[var]),
            ("largest (128 KiB)", b"x" * (MAX_ARG_STRLEN - len(var) - 2)),
            ("1 MiB", b"y" * (1 << 20))]
    if var == "PYFINGUARD_LOG":
        vals.append(("no such dir", b"/nonexistent/dir/pyfinguard.log"))
    return vals


def hosts():
    out = [("/bin/true", ["/bin/true"], {}), ("sh -c 'exit 3'", ["sh", "-c", "exit 3"], {}),
           ("ls -la", ["ls", "-la", "--time-style=+", "/usr/bin/true", "/usr/share/common-licenses"], {}),
           ("gcc --version", ["gcc", "--version"], {})]
    usable, _ = common.pick_interpreters()
    for it in usable:
        if it.name.startswith("pyenv-3.11") or it.kind == "static exe":
            out.append((it.name + " -c", [it.executable, "-c", "print('hi'); raise SystemExit(5)"], {}))
    for it in usable:
        if it.kind == "static exe":
            moddir = common.build.build_extension(it, "pfgstress",
                                                  [os.path.join(common.HERE, "stress_ext.c")])
            out.append((it.name + " parking", [it.executable, "-c",
                        "import pfgstress; pfgstress.late_at_exit(); raise SystemExit(5)"],
                        {"PYTHONPATH": moddir, "parks": "1"}))
    return out


def run_env(cmd, envb):
    import shutil
    import subprocess
    import tempfile
    # In a scratch directory: "stderr " (an almost-right PYFINGUARD_LOG) is a relative
    # file name, and the guard rightly creates it in the current directory.
    cwd = tempfile.mkdtemp(prefix="pfg-bad-")
    try:
        # Bytes in and out: the values under test need not be UTF-8.
        r = common.run_.run(cmd, envb, 60, cwd, stdin=subprocess.DEVNULL, text=False)
    except OSError as e:
        if e.errno == errno.E2BIG:
            return "E2BIG", b"", b""
        raise
    finally:
        shutil.rmtree(cwd, ignore_errors=True)
    if r.timed_out:
        return "hang", b"", b""
    return r.status, r.stdout, r.stderr


def norm(b):
    return re.sub(rb"pid \d+", b"pid N", b)


strict = False


def main():
    global strict
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lib")
    ap.add_argument("--strict", action="store_true")
    ap.add_argument("--verbose", action="store_true", help="one row per host x variable x value")
    a = ap.parse_args()
    strict = a.strict
    lib = common.find_library(a.lib)
    rows, problems, cells = [], [], 0
    for hname, cmd, extra in hosts():
        parks = extra.pop("parks", None)
        base_env = {k.encode(): v.encode() for k, v in common.clean_env(extra).items()}
        ref_env = dict(base_env)
        if parks:
            ref_env[b"LD_PRELOAD"] = lib.encode()
        ref = run_env(cmd, ref_env)
        cases = [(v, name, val) for v in VARS for name, val in values(v)]
        cases.append(("all four", "garbage", None))
        for var, vname, val in cases:
            env = dict(base_env)
            env[b"LD_PRELOAD"] = lib.encode()
            if val is None:
                for v in VARS:
                    env[v.encode()] = values(v)[1][1]
            else:
                env[var.encode()] = val
            rc, out, err = run_env(cmd, env)
            cells += 1
            if rc == "E2BIG":
                rows.append([hname, var, vname, "E2BIG (execve refuses it: no process)", "", ""])
                continue
            extra_lines = [l for l in err.splitlines() if l not in ref[2].splitlines()]
            warns = [l for l in extra_lines if l.startswith(b"pyfinguard: warning:")]
            other = [l for l in extra_lines if not l.startswith(b"pyfinguard: warning:")]
            if parks:  # the parked thread's report differs run to run (tids, addresses)
                other = [l for l in other if not l.startswith(b"pyfinguard:")]
            ctrl = any(c < 0x20 or c == 0x7f for w in warns for c in w)
            known = None
            if other and b"(reports in " in b"\n".join(err.splitlines()) and not strict:
                # Reported guard bug: the exit summary echoes PYFINGUARD_LOG raw (control
                # characters and newlines reach the terminal), unlike the warning line.
                known = "KNOWN: exit summary prints PYFINGUARD_LOG unescaped"
                other = []
            ok = (rc == ref[0] and norm(out) == norm(ref[1]) and len(warns) <= 1 and not other
                  and not ctrl)
            rows.append([hname, var, vname, "exit %s (own: %s)" % (rc, ref[0]),
                         "%d%s" % (len(warns), " (%d chars)" % len(warns[0]) if warns else ""),
                         ("ok" if not known else known) if ok else "FAIL"])
            if not ok:
                problems.append("%s %s=%s: exit %s (want %s), stdout %s, warnings %d, other stderr %r" % (
                    hname, var, vname, rc, ref[0], "same" if norm(out) == norm(ref[1]) else "DIFFERS",
                    len(warns), other[:3]))
    print("library: %s" % lib)
    if a.verbose:
        common.table(["host", "variable", "value", "exit status", "warning lines", "result"], rows)
        print()
    summary = []
    for hname in sorted(set(r[0] for r in rows), key=[r[0] for r in rows].index):
        mine = [r for r in rows if r[0] == hname]
        ran = [r for r in mine if r[5]]
        statuses = sorted(set(r[3].split(" (")[0] for r in ran))
        warn_max = max([int(r[4].split()[0]) for r in ran if r[4]] or [0])
        summary.append([hname, len(ran), len(mine) - len(ran), ", ".join(statuses),
                        warn_max, sum(1 for r in ran if r[5] == "FAIL"),
                        sum(1 for r in ran if r[5].startswith("KNOWN"))])
    common.table(["host", "cells run", "E2BIG (1 MiB: not passable)", "exit statuses with guard",
                  "max warning lines", "failed", "known bug"], summary)
    n_ok = sum(1 for r in rows if r[5] == "ok")
    known = ["%s: %s %s=%s" % (r[5], r[0], r[1], r[2]) for r in rows if r[5].startswith("KNOWN")]
    return common.runner.finish(problems, n_ok, more=", %d known (reported guard bug, not counted)"
                                % len(known), notes=known)


if __name__ == "__main__":
    sys.exit(main())
