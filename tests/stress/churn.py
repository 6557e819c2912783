#!/usr/bin/env python3
"""Thread churn: the guard's memory stays bounded.

    tests/stress/stress.py churn [--threads 100000] [--live 1000] [--only 3.11 ...] [--all]

Runs churn_prog.py (100,000 Python threads that each release and reacquire the GIL and
exit, then 100,000 native threads that each PyGILState_Ensure / drop and retake the GIL /
Release and exit, plus 1,000 threads alive at once) without and with the guard, and prints
VmRSS/VmData figures: per live thread, and growth from the half-way point to the end of
each churn (anything the guard kept per thread ever created would show up there).
The guard keeps its per-thread state in static TLS (a few words inside each thread's own
TLS block, freed with the thread) and allocates nothing per thread.
Fails if, with the guard, memory grows by more than 1 MiB over the second half of either
churn, or a live thread costs more than 4 KiB more than without the guard.
Default interpreters: pyenv 3.11 and Debian's /usr/bin/python3.11; --all: every python.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

MIB = 1 << 20


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lib")
    ap.add_argument("--threads", type=int, default=100000)
    ap.add_argument("--live", type=int, default=1000)
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--all", action="store_true")
    ap.add_argument("--build-dir", default=os.environ.get("PFGPY_BUILD_DIR"))
    a = ap.parse_args()
    lib = common.find_library(a.lib)
    usable, _ = common.pick_interpreters(a.only)
    its = [i for i in usable if i.can_run_programs]
    if not a.all and not a.only:
        its = [i for i in its if i.name.startswith("pyenv-3.11") or i.kind == "static exe"]
    print("library: %s" % lib)
    print("%d threads per churn, %d live at once" % (a.threads, a.live))
    rows, problems = [], []
    for it in its:
        moddir = common.build.build_extension(it, "pfgstress",
                                              [os.path.join(common.HERE, "stress_ext.c")], a.build_dir)
        res = {}
        for guard in (False, True):
            env = common.guard_env(lib, guard, {"PYTHONPATH": moddir})
            r = common.run([it.executable, os.path.join(common.HERE, "churn_prog.py"),
                            str(a.threads), str(a.live)], env, 1800)
            if r.status != 0:
                problems.append("%s guard=%s: %s %s" % (it.name, guard, r.describe(), r.stderr[-400:]))
                res[guard] = None
                continue
            line = [l for l in r.stdout.splitlines() if l.startswith("{")][-1]
            res[guard] = (json.loads(line), r.seconds)
        for guard in (False, True):
            if not res[guard]:
                continue
            m, secs = res[guard]
            per_live = (m["live"]["VmData"] - m["start"]["VmData"]) / float(a.live)
            rss_live = (m["live"]["VmRSS"] - m["start"]["VmRSS"]) / float(a.live)
            py_tail = m["py_done"]["VmRSS"] - m["py_half"]["VmRSS"]
            nat_tail = m["native_done"]["VmRSS"] - m["native_half"]["VmRSS"]
            total = m["native_done"]["VmRSS"] - m["start"]["VmRSS"]
            data_total = m["native_done"]["VmData"] - m["start"]["VmData"]
            rows.append([it.name, "with" if guard else "without", "%.0f" % secs,
                         "%.0f" % rss_live, "%.0f" % per_live,
                         "%+.1f" % (py_tail / 1024.0), "%+.1f" % (nat_tail / 1024.0),
                         "%+.1f" % (total / 1024.0), "%+.1f" % (data_total / 1024.0)])
            if guard and (py_tail > MIB or nat_tail > MIB):
                problems.append("%s: memory grows with the number of threads created (%+d / %+d bytes "
                                "over the second half)" % (it.name, py_tail, nat_tail))
        if res[False] and res[True]:
            d = ((res[True][0]["live"]["VmRSS"] - res[True][0]["start"]["VmRSS"]) -
                 (res[False][0]["live"]["VmRSS"] - res[False][0]["start"]["VmRSS"])) / float(a.live)
            if d > 4096:
                problems.append("%s: a live thread costs %.0f bytes more with the guard" % (it.name, d))
    print()
    common.table(["interpreter", "guard", "seconds", "RSS per live thread (B)",
                  "VmData per live thread (B)", "RSS growth, 2nd half Python churn (KiB)",
                  "RSS growth, 2nd half native churn (KiB)", "RSS after both churns (KiB)",
                  "VmData after both churns (KiB)"], rows)
    failed = len(set(p.split(":")[0] for p in problems))
    return common.runner.finish(problems, len(its) - failed, failed)


if __name__ == "__main__":
    sys.exit(main())
