# A C worker pool (native/conddrain.c) whose exit-time destructor (after Py_FinalizeEx)
# waits on a condition variable for each worker's final callback into Python: with no time
# limit (BOUND_MS 0) or at most BOUND_MS milliseconds.
# argv: LIB ctypes|cffi BOUND_MS
# Without a guard the final callbacks are PyGILState_Ensure calls on a finalized runtime.
# Own status 22.
import sys
from _common import exit_now
from _native import keep_forever, load

path, binding, bound = sys.argv[1], sys.argv[2], int(sys.argv[3])
lib, ffi = load(binding, path, """
    int conddrain_open(int, int, int (*)(int, int));
    int conddrain_run(int);
""")
calls = [0]


def on_job(worker, job):
    calls[0] += 1
    return 0


if ffi is None:
    import ctypes
    CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_int)
    cb = CB(on_job)
else:
    cb = ffi.callback("int(int, int)", on_job)
keep_forever(cb)
n = lib.conddrain_open(4, bound, cb)
done = lib.conddrain_run(40)
print("conddrain (%s, bound %d ms): %d workers ran %d jobs, %d callbacks" % (
    binding, bound, n, done, calls[0]))
exit_now(22)
