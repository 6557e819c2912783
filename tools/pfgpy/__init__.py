"""pyfinguard's Python package: shared by the launcher (tools/pyfinguard), the tests and
the benchmarks. Standard library only, Python 3.6+.

    sys.path.insert(0, os.path.join(REPO, "tools"))
    from pfgpy import interpreters, build

interpreters  the interpreters and libpythons on this machine (discover())
build         compile embedding programs, hosts, modules, extensions for one (cached)
env           the one environment scrubber for child processes (scrubbed())
run           the one run-with-timeout: own process group, killed whole (run())
runner        the one test runner of tests/: cells, parallel loop, summary line (tests only)
summary       the one parser of the guard's exit summary line and park reports
library       the one finder of libpyfinguard.so for tests and tools in the source tree
scenario      the scenario runner: build a scenario program, run it, read its STATE lines
live          the live scenario and a run without/with the guard (doctor, demo)
doctor, demo  the launcher's `doctor` and `demo` commands
c/            the C programs the launcher builds (pfgtest.c, late_ensure.c,
              doctor_host.c) and scen.h, which every scenario program includes
"""
__all__ = ["interpreters", "build"]
