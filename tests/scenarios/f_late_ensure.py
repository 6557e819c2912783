# Scenario f (late Ensure): an extension's native thread (pfgtest.late_ensure) makes its
# first PyGILState_Ensure call after finalization, woken by pfgtest's libc atexit handler.
# SIGSEGV on every CPython without a guard. The program's own status is 7.
import sys

import pfgtest

tid = pfgtest.late_ensure()
if not pfgtest.wait_blocked(1, 5.0):
    sys.exit(92)
print("main: native thread %s is waiting; exit 7" % ("started" if tid else "?"), flush=True)
sys.exit(7)
