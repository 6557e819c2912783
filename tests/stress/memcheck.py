#!/usr/bin/env python3
"""The core scenarios under valgrind memcheck, without and with the guard.

    tests/stress/stress.py memcheck [--only 3.11 ...] [--all]

Scenarios (memcheck_scen.c): `restore` (PyEval_RestoreThread with a thread state freed by
Py_FinalizeEx), `ensure` (a native thread's first PyGILState_Ensure after finalization),
`reinit` (a first-runtime worker's PyEval_RestoreThread after Py_Initialize ran again).
PYTHONMALLOC=malloc hands Python's memory to malloc, where memcheck sees it freed.

Checks, per interpreter:
  * with the guard: every scenario exits with its own status 7 and memcheck reports no
    "Invalid read"/"Invalid write" anywhere in the process;
  * without the guard: the check can fail: `reinit` reports an invalid read (of freed
    thread-state memory on every interpreter but sometimes 3.6), and `ensure` an invalid
    read (then SIGSEGV).
Only invalid reads and writes are counted. python-startup.supp suppresses CPython's known
noise only: pymalloc's address_in_range() (valgrind-python.supp's ADDRESS_IN_RANGE), which
matters for 3.6 embedders (3.6 reads PYTHONMALLOC only in Py_Main). Other start-up noise
(uninitialised-value reports) is identical with and without the guard (the table shows it).
Default interpreters (CI): pyenv 3.9, 3.11, 3.13; --all: every embeddable interpreter.
"""
import argparse
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

SCENARIOS = ("restore", "ensure", "reinit")
SUPP = os.path.join(common.HERE, "python-startup.supp")
DEFAULT = ("3.9.", "3.11.", "3.13.")


def vg(exe, mode, env, timeout):
    cmd = ["valgrind", "--tool=memcheck", "--smc-check=all", "--error-exitcode=0",
           "--child-silent-after-fork=yes", "--suppressions=" + SUPP, exe, mode]
    r = common.run(cmd, env, timeout)
    invalid = len(re.findall(r"^==\d+== Invalid (?:read|write) of size", r.stderr, re.M))
    freed = len(re.findall(r"^==\d+==  Address 0x[0-9a-f]+ is \d+ bytes inside a block of size \d+ free'd",
                           r.stderr, re.M))
    m = re.search(r"ERROR SUMMARY: (\d+) errors from \d+ contexts \(suppressed: (\d+)", r.stderr)
    total = "%s (+%s suppressed)" % (m.group(1), m.group(2)) if m else "?"
    # memcheck reports a fatal signal itself; the valgrind process then exits with it
    sig = re.search(r"Process terminating with default action of signal \d+ \((\w+)\)", r.stderr)
    status = "hang" if r.timed_out else (sig.group(1) if sig else r.describe())
    return {"status": status, "rc": r.status, "invalid": invalid, "freed": freed, "total": total,
            "err": r.stderr}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lib")
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--all", action="store_true")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--build-dir", default=os.environ.get("PFGPY_BUILD_DIR"))
    ap.add_argument("--save", metavar="DIR", help="keep each valgrind log here")
    a = ap.parse_args()
    lib = common.find_library(a.lib)
    import shutil
    if shutil.which("valgrind") is None:
        print("valgrind not installed (apt-get install valgrind): memcheck skipped")
        return 77  # meson's "skipped"
    usable, _ = common.pick_interpreters(a.only)
    its = [i for i in usable if i.can_embed]
    if not a.all and not a.only:
        its = [i for i in its if i.source == "pyenv" and i.version_str.startswith(DEFAULT)] or its[:1]
    print("library: %s" % lib)
    cases = []
    for it in its:
        exe = common.build.build_embed(it, [os.path.join(common.HERE, "memcheck_scen.c")],
                                       build_dir=a.build_dir, name="memcheck_scen")
        for sc in SCENARIOS:
            for guard in (False, True):
                env = common.guard_env(lib, guard, {"PYTHONMALLOC": "malloc"})
                cases.append(((it.name, sc, guard), (exe, sc, env, a.timeout)))
    done = common.runner.execute(vg, [c for _, c in cases], a.jobs, show=False)
    res = dict(zip([k for k, _ in cases], done))
    rows, problems = [], []
    for it in its:
        for sc in SCENARIOS:
            b, g = res[(it.name, sc, False)], res[(it.name, sc, True)]
            rows.append([it.name, sc, b["status"], "%d (%d in freed blocks)" % (b["invalid"], b["freed"]),
                         b["total"], g["status"], g["invalid"], g["total"]])
            if g["invalid"] or g["status"] != "exit 7":
                problems.append("%s %s with the guard: %s, %d invalid read/write" % (
                    it.name, sc, g["status"], g["invalid"]))
            # Without the guard the stale thread must be caught doing something invalid:
            # usually a read inside the freed thread state; on 3.6 (pymalloc on in
            # embedders) it sometimes dies on a read of an address memcheck cannot place.
            if sc == "reinit" and b["invalid"] == 0:
                problems.append("%s reinit without the guard: no invalid access reported "
                                "(the check could not fail)" % it.name)
            if sc == "ensure" and b["invalid"] == 0:
                problems.append("%s ensure without the guard: no invalid read reported" % it.name)
            if a.save:
                os.makedirs(a.save, exist_ok=True)
                for guard, r in ((False, b), (True, g)):
                    with open(os.path.join(a.save, "%s.%s.%s.log" % (
                            common.build._slug(it.name), sc, "guard" if guard else "base")), "w") as f:
                        f.write(r["err"])
    print()
    common.table(["interpreter", "scenario", "without: outcome", "without: invalid r/w",
                  "without: all errors", "with: outcome", "with: invalid r/w", "with: all errors"], rows)
    return common.runner.finish(problems, len(rows) - len(problems))


if __name__ == "__main__":
    sys.exit(main())
