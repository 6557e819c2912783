# An event library (native/lockbus.cc) that calls Python listeners while holding its bus
# mutex in a std::lock_guard, and whose global Bus object's destructor takes that mutex at
# exit (after Py_FinalizeEx) to stop the workers and clear the listeners.
# argv: LIB ctypes|cffi workers|pump
#   workers: 4 native worker threads of the library deliver the events;
#   pump:    4 Python daemon threads call into the library (lockbus_run, GIL released)
#            and deliver the events from there: Python threads blocked inside the library
#            when the program exits.
# Without a guard: CPython 3.9-3.13.7 ends each late deliverer with pthread_exit, whose
# unwind releases the lock_guard, and the destructor's line is printed; a late deliverer
# blocked for ever keeps the mutex and the exit waits for it. Own status 21.
import sys
import time
from _common import exit_now
from _native import keep_forever, load

path, binding, mode = sys.argv[1], sys.argv[2], sys.argv[3]
lib, ffi = load(binding, path, """
    int lockbus_subscribe(int (*)(int, void *), void *);
    int lockbus_start(int, int);
    void lockbus_run(int);
    long lockbus_delivered(void);
""")
seen = [0]


def on_event(event, user):
    seen[0] += 1
    return 0


if ffi is None:
    import ctypes
    LISTENER = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_void_p)
    listener = LISTENER(on_event)
    lib.lockbus_delivered.restype = ctypes.c_long
    lib.lockbus_subscribe(listener, None)
else:
    listener = ffi.callback("int(int, void *)", on_event)
    lib.lockbus_subscribe(listener, ffi.NULL)
keep_forever(listener)

if mode == "workers":
    lib.lockbus_start(4, 200)
else:
    from _common import daemon
    for _ in range(4):
        daemon(lib.lockbus_run, 200)
deadline = time.monotonic() + 60
while lib.lockbus_delivered() < 200 and time.monotonic() < deadline:
    time.sleep(0.005)
print("lockbus (%s, %s): %s" % (binding, mode, "delivering events" if seen[0] >= 200
                                else "only %d events" % seen[0]))
exit_now(21)
