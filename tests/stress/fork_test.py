#!/usr/bin/env python3
"""fork under the guard: the child runs and finalizes normally and guards its own threads.

    tests/stress/stress.py fork [--only NAME...]

For every python executable: fork_prog.py (os.fork and multiprocessing 'fork' from a
parent holding guard state). For every embeddable interpreter: fork_embed.c, where the
parent already has two parked threads (first runtime) when it forks (second runtime).
Expected, with the guard: parent exit 7; os.fork child: parked count 0 right after the
fork, exit 0, and its own two late threads parked at its exit ("PARKED 2 pid <child>");
multiprocessing child: parked count 0, exit 5; parent's count = its own parked threads.
The same programs run without the guard for comparison (not asserted: the late threads
crash or not there, which is the point of the guard).
"""
import argparse
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

PROG = os.path.join(common.HERE, "fork_prog.py")


def analyse(r):
    o = r.stdout
    def grab(pat, conv=int):
        m = re.search(pat, o, re.M)
        return conv(m.group(1)) if m else None
    parent_pid = grab(r"^parent: pid (\d+)")
    child_pid = grab(r"^child: pid (\d+)")
    parked = {int(p): int(n) for n, p in re.findall(r"^PARKED (-?\d+) pid (\d+)$", o, re.M)}
    return {
        "status": r.describe(),
        "before_fork": grab(r"^parent: pid \d+ parked (-?\d+) before fork"),
        "child_after_fork": grab(r"^child: pid \d+ parked (-?\d+) after fork"),
        "child_status": grab(r"^parent: os.fork child status (-?\d+)"),
        "child_parked": parked.get(child_pid),
        "mp_child": grab(r"^mp-child: parked (-?\d+)"),
        "mp_status": grab(r"^parent: multiprocessing child exitcode (-?\w+)", str),
        "parent_parked": parked.get(parent_pid),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lib")
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--build-dir", default=os.environ.get("PFGPY_BUILD_DIR"))
    a = ap.parse_args()
    lib = common.find_library(a.lib)
    usable, _ = common.pick_interpreters(a.only)
    rows, problems = [], []
    for it in usable:
        moddir = common.build.build_extension(it, "pfgstress",
                                              [os.path.join(common.HERE, "stress_ext.c")], a.build_dir)
        variants = []
        if it.can_run_programs:
            variants.append(("python", [it.executable, PROG], 1))
        if it.can_embed:
            exe = common.build.build_embed(it, [os.path.join(common.HERE, "fork_embed.c")],
                                           build_dir=a.build_dir, name="fork_embed")
            variants.append(("embed, 2 parked before fork", [exe, PROG], 3))
        for name, cmd, parent_expect in variants:
            for guard in (False, True):
                r = common.run(cmd, common.guard_env(lib, guard, {"PYTHONPATH": moddir}), 120)
                x = analyse(r)
                rows.append([it.name, name, "with" if guard else "without", x["status"],
                             x["before_fork"], x["child_after_fork"], x["child_status"],
                             x["child_parked"], x["mp_child"], x["mp_status"], x["parent_parked"]])
                if not guard:
                    continue
                want = {"status": "exit 7", "child_after_fork": 0, "child_status": 0,
                        "child_parked": 2, "mp_child": 0, "mp_status": "5",
                        "parent_parked": parent_expect}
                bad = ["%s=%s (want %s)" % (k, x[k], v) for k, v in want.items() if x[k] != v]
                if bad:
                    problems.append("%s %s: %s\n  stdout: %s\n  stderr: %s" % (
                        it.name, name, ", ".join(bad), r.stdout[-600:].replace("\n", " | "),
                        "\n".join(l for l in r.stderr.splitlines() if "#" not in l)[-800:]))
    common.table(["interpreter", "program", "guard", "parent", "parked before fork",
                  "child: parked after fork", "child exit", "child: parked at its exit",
                  "mp child: parked", "mp child exit", "parent: parked at exit"], rows)
    n = sum(1 for r in rows if r[2] == "with")
    return common.runner.finish(problems, n - len(problems))


if __name__ == "__main__":
    sys.exit(main())
