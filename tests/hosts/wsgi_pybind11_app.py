# A WSGI application with a C++ (pybind11) background worker, for the uWSGI host test: the
# worker waits for a shutdown signal inside py::gil_scoped_release (the pfgbind module,
# tests/scenarios/pfgbind.cc, built for Debian's python3.11 and put on the host's
# sys.path), and the application sends that signal from a finalizer, which runs while the
# process finalizes Python. The worker then takes the GIL back in gil_scoped_release's
# destructor, on a finalizing runtime: CPython 3.11 ends the thread with pthread_exit inside
# a noexcept destructor, and the C++ runtime aborts the process ("terminate called without
# an active exception"). With the guard the worker is parked.
import os
import threading

import pfgbind

_r, _w = os.pipe()


class _ShutdownSignal(object):
    def __init__(self):
        self.write, self.fd = os.write, _w   # kept: module globals are gone by then

    def __del__(self):
        self.write(self.fd, b"x")


_signal = _ShutdownSignal()


def _worker():
    pfgbind.wait_released(_r)


threading.Thread(target=_worker, name="pfg-native-worker", daemon=True).start()


def application(environ, start_response):
    body = "ok pid=%d native worker alive=%s\n" % (
        os.getpid(), any(t.name == "pfg-native-worker" for t in threading.enumerate()))
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body.encode()]
