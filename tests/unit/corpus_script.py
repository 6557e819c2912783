# Run by test_patch_corpus.py in every interpreter, once unpatched and once with every
# exported function of the interpreter's image entry-patched. Its output must be the same.
# Python 3.6 syntax. Exercises the GIL API from threads (time.sleep and lock waits release
# and reacquire the GIL) and calls C API functions with known results through ctypes,
# i.e. through their patched entries.
import ctypes
import decimal
import hashlib
import json
import math
import re
import sys
import threading
import time


def work(n):
    return sum(i * i for i in range(n))


results = []
lock = threading.Lock()


def worker(k):
    v = work(20000 + k)
    time.sleep(0.005)
    with lock:
        results.append((k, v))


threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()

api = ctypes.pythonapi
api.PyLong_FromLong.restype = ctypes.py_object
api.PyLong_FromLong.argtypes = [ctypes.c_long]
api.PyLong_AsLong.restype = ctypes.c_long
api.PyLong_AsLong.argtypes = [ctypes.py_object]
api.Py_GetVersion.restype = ctypes.c_char_p
buf = ctypes.create_string_buffer(64)
n = api.PyOS_snprintf(buf, 64, b"%d-%s", ctypes.c_int(42), b"pfg")
longs = [api.PyLong_AsLong(api.PyLong_FromLong(v)) for v in (0, 1, -1, 2 ** 40, -(2 ** 62))]
assert longs == [0, 1, -1, 2 ** 40, -(2 ** 62)], longs
assert api.Py_GetVersion().decode() == sys.version, (api.Py_GetVersion(), sys.version)

d = {
    "results": sorted(results),
    "re": re.findall(r"\w+", "hello patched world"),
    "decimal": str(decimal.Decimal(1) / 7),
    "pi": "%.9f" % math.pi,
    "sha": hashlib.sha256(b"pfg").hexdigest(),
    "snprintf": [n, buf.value.decode()],
    "longs": longs,
}
print("SCRIPT", hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest(), d["snprintf"], longs)
