"""Shared by the scripts in tests/stress/: where the repo, the library and the
interpreters are, how to run a child with or without the guard, and table printing.

Interpreter discovery and compilation come from tools/pfgpy (owned by the scenarios
work; used read-only here). Python 3.6+ (the harness itself runs on /usr/bin/python3).
"""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tools"))

from pfgpy import build, env as env_, interpreters, library, run as run_, runner  # noqa: E402,F401

LAUNCHER = os.path.join(REPO, "tools", "pyfinguard")


def find_library(explicit=None):
    """--lib, $PYFINGUARD_LIBRARY, then the in-tree build directories (build-rel first:
    the one the reliability runs in docs/reliability.md were made with)."""
    lib = library.find(explicit, use_env=True, build_dirs=("build-rel", "build", "build-stress"))
    if lib is None:
        sys.exit("libpyfinguard.so not found: build it (meson setup build && meson compile "
                 "-C build) or pass --lib")
    return lib


def clean_env(extra=None):
    """The caller's environment without anything that would change which Python or
    which guard a child sees (pfgpy.env's defaults, and PYTHONMALLOC)."""
    return env_.scrubbed(drop=("PYTHONMALLOC",), set=extra)


def guard_env(lib, guard, extra=None):
    return env_.scrubbed(drop=("PYTHONMALLOC",), preload=lib if guard else None, set=extra)


def run(cmd, env, timeout, cwd=None, stdin=subprocess.DEVNULL, cores=False):
    """pfgpy.run.run, its stdin /dev/null and SIGINT/SIGQUIT at their defaults (a
    background shell's children inherit them ignored, and CPython tests that use
    _thread.interrupt_main() then fail or spin). cores=True lifts RLIMIT_CORE in the
    child (with the kernel's default core_pattern the core lands in cwd)."""
    return run_.run(cmd, env, timeout, cwd, stdin, cores=True if cores else None,
                    default_signals=True)


def table(headers, rows, out=sys.stdout):
    """A Markdown table (pastes into docs/reliability.md as printed)."""
    rows = [[str(c) for c in r] for r in rows]
    w = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    line = lambda cells: "| " + " | ".join(c.ljust(w[i]) for i, c in enumerate(cells)) + " |"
    out.write(line(headers) + "\n")
    out.write("|" + "|".join("-" * (x + 2) for x in w) + "|\n")
    for r in rows:
        out.write(line(r) + "\n")
    out.flush()


def pick_interpreters(names=None, sysroot=None):
    """Usable interpreters (skipped ones returned separately for the tables); with sysroot,
    that sysroot's (run under qemu-user: pfgpy.interpreters.discover_sysroot)."""
    its = interpreters.discover(sysroot=sysroot)
    if names:
        its = [i for i in its if any(n in i.name for n in names)]
    return [i for i in its if i.skip is None], [i for i in its if i.skip is not None]


def assert_guard_loaded(python, lib, via_launcher=False, runner=(), timeout=60):
    """A guarded run that silently ran without the guard would prove nothing: ask the
    child process itself whether pyfinguard's API is there. runner: the prefix of a
    sysroot's interpreter (qemu-user, pfgpy.interpreters)."""
    code = "import ctypes; f = ctypes.CDLL(None).pyfinguard_version; " \
           "f.restype = ctypes.c_char_p; print(f().decode())"
    cmd = list(runner) + [python, "-c", code]
    env = clean_env({"PYFINGUARD_LIBRARY": lib})
    if via_launcher:
        cmd = [sys.executable, LAUNCHER, "run", "--"] + cmd
    else:
        env["LD_PRELOAD"] = lib
    r = run(cmd, env, timeout)
    if r.status != 0 or not r.stdout.strip():
        sys.exit("guard not active in %s: %s %s" % (python, r.describe(), r.stderr[-500:]))
    return r.stdout.strip()
