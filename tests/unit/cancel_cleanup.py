#!/usr/bin/python3
"""A thread's C++ cleanups run when glibc unwinds it, with the guard preloaded too.

    cancel_cleanup.py LIB HOST CLEANUP_LIB

HOST, a C program, dlopen()s CLEANUP_LIB (C++, RTLD_LOCAL, as ctypes or cffi load a
library), whose thread holds a std::lock_guard and is ended by pthread_exit, or by
pthread_cancel. Without the guard the unwind releases the lock. The guard once linked
libunwind.so.8, whose _Unwind_* exports then shadowed libgcc_s's for the late-loaded
libstdc++: its personality routine read a garbage IP and skipped the cleanup, so the lock
stayed held (and CPython 3.9-3.13's pthread_exit of a late thread left an exit-time
destructor waiting on it for ever). Each way runs without and with LIB; output and status
must be the same, and the lock released.
"""
import os
import subprocess
import sys

lib, host, cleanup = sys.argv[1:4]
fails = 0
for how in ("exit", "cancel"):
    outs = []
    for preload in ("", lib):
        env = dict(os.environ)
        env.pop("LD_PRELOAD", None)
        if preload:
            env["LD_PRELOAD"] = preload
        p = subprocess.run([host, cleanup, how], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=30)
        outs.append((p.returncode, p.stdout.decode()))
        print("%-6s %-9s status %d: %s" % (how, "guarded" if preload else "unguarded",
                                          p.returncode, p.stdout.decode().strip().replace("\n", " | ")))
    if outs[0] != outs[1] or outs[0][0] != 0:
        print("FAIL: %s: guarded run differs or the lock stayed held" % how)
        fails += 1
print("%d passed, %d failed" % (2 - fails, fails))
sys.exit(1 if fails else 0)
