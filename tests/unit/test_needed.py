#!/usr/bin/python3
"""The guard's shared objects needed at load must not include the C++ runtime, nor libunwind.

    test_needed.py LIB

libstdc++ (with libgcc_s and libm) costs every process the guard is preloaded into ~1 ms
of start-up: ld.so maps it and binds its symbols (docs/performance.md). The shim uses no
C++ runtime, and --as-needed drops the library -- unless something references it after
all: with Meson >= 1.4 non-release builds define _GLIBCXX_ASSERTIONS, and GCC 16's
std::atomic then calls std::__glibcxx_assert_fail (shim/meson.build undefines it).
libunwind is loaded on demand with RTLD_LOCAL: as a DT_NEEDED library its _Unwind_*
exports shadow libgcc_s's and break pthread_exit's C++ cleanups (shim/backtrace.h;
tests/unit/cancel_cleanup.py shows the harm).
"""
import subprocess
import sys

lib = sys.argv[1]
out = subprocess.run(["readelf", "-d", lib], stdout=subprocess.PIPE, check=True).stdout.decode()
needed = [l.split("[", 1)[1].rstrip("]") for l in out.splitlines() if "(NEEDED)" in l]
print("%s needs: %s" % (lib, ", ".join(needed)))
bad = [n for n in needed if n.startswith(("libstdc++", "libgcc_s", "libm.", "libunwind"))]
if bad:
    undef = subprocess.run(["nm", "-D", "--undefined-only", lib], stdout=subprocess.PIPE).stdout.decode()
    print("FAIL: needs %s; undefined C++ symbols:\n%s" % (", ".join(bad), "\n".join(
        l for l in undef.splitlines() if "GLIBCXX" in l or "CXXABI" in l or "GCC_" in l)))
    sys.exit(1)
