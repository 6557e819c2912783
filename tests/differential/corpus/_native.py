# Shared by the programs that bind a native library of corpus/native (lockbus, conddrain):
# the binding, ctypes or cffi (ABI mode: no compiler at run time, as a wheel shipping a .so
# would do). Debian's python3-cffi is built for Debian's /usr/bin/python3.11 only; elsewhere
# the program is a SKIP with that reason.
from _common import skip


def load(binding, path, cdef):
    """(lib, ffi): ffi is None for ctypes; for cffi, the FFI whose callback() the program
    uses (it must keep the callback object alive while the library may call it)."""
    if binding == "ctypes":
        import ctypes
        lib = ctypes.CDLL(path)
        return lib, None
    try:
        import cffi
    except ImportError as e:
        skip("cffi cannot be imported by this interpreter (%s); Debian's python3-cffi "
             "is built for /usr/bin/python3.11" % e)
    ffi = cffi.FFI()
    ffi.cdef(cdef)
    return ffi.dlopen(path), ffi


def keep_forever(callback):
    """Keep a ctypes or cffi callback object alive for the process's life. Both free the
    callback's code (its libffi closure) when the object is deallocated, which
    finalization does to module globals: a call from C after that jumps into freed memory
    (cffi, measured: SIGSEGV or SIGILL in every conddrain run, with or without a guard --
    no guard can make that call land). Their docs say to keep the object alive while C
    may call it; a library that calls back at exit needs it for the process's life: one
    reference never released (Py_IncRef through ctypes, with any binding)."""
    import ctypes
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(callback))
