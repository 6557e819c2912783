# ctypes callbacks (the qsort comparator example of the ctypes documentation) called from
# daemon threads while the program exits. argv[1]: 'cdll' (the call releases the GIL; each
# callback takes it with PyGILState_Ensure) or 'pydll' (the call keeps the GIL; each
# callback's PyGILState_Ensure is nested, under the GIL). argv[2]: number of threads.
# The interpreter's shutdown lasts a while before CPython's point of no return, with the
# GIL released: a non-daemon thread still sorting is joined, and an atexit handler waits
# for it too, so the daemons' callbacks run during Py_FinalizeEx.
import atexit
import ctypes
import threading
import time
import random
import sys
from _common import Started, daemon, exit_now

kind, nthreads = sys.argv[1], int(sys.argv[2])
libc = (ctypes.CDLL if kind == "cdll" else ctypes.PyDLL)("libc.so.6")
qsort = libc.qsort
qsort.restype = None
CMPFUNC = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int))


def py_cmp_func(a, b):
    return a[0] - b[0]


cmp_func = CMPFUNC(py_cmp_func)
started = Started()


def sorter(seed):
    values = list(range(64))
    random.Random(seed).shuffle(values)
    arr_t = ctypes.c_int * len(values)
    started.add()
    while True:
        arr = arr_t(*values)
        qsort(arr, len(arr), ctypes.sizeof(ctypes.c_int), cmp_func)
        if list(arr) != sorted(values):
            raise RuntimeError("not sorted")


def finisher(done):
    values = list(range(16, 0, -1))
    for _ in range(3):
        arr = (ctypes.c_int * 16)(*values)
        qsort(arr, 16, ctypes.sizeof(ctypes.c_int), cmp_func)
    done.append(list(arr)[:3])


def at_exit(done):
    time.sleep(0.02)
    print("atexit: finisher sorted", done[0], flush=True)


IntArray5 = ctypes.c_int * 5
ia = IntArray5(5, 1, 7, 33, 99)
qsort(ia, len(ia), ctypes.sizeof(ctypes.c_int), cmp_func)
print(kind, "sorted", list(ia))
for i in range(nthreads):
    daemon(sorter, i)
started.wait(nthreads)
print(nthreads, "threads sorting with a Python comparator")
done = []
atexit.register(at_exit, done)
threading.Thread(target=finisher, args=(done,)).start()
exit_now(16)
