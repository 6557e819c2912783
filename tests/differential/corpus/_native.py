# Shared by the programs that bind a native library of corpus/native (lockbus, conddrain):
# the binding, ctypes or cffi (ABI mode: no compiler at run time, as a wheel shipping a .so
# would do). Debian's python3-cffi is built for Debian's /usr/bin/python3.11 only; elsewhere
# the program is a SKIP with that reason.
from _common import skip


def load(binding, path, cdef):
    """(lib, callback) where callback(signature, pyfunc) keeps a C function pointer alive."""
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
