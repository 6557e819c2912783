# A small WSGI application served by the host tests (Apache mod_wsgi, uwsgi). On import it
# starts daemon threads as real applications do -- a metrics loop that wakes every few
# milliseconds (time.sleep), a consumer blocked on a queue, a reader blocked in os.read on a
# pipe nobody writes -- unless PFG_APP_THREADS=0 in its environment (or the WSGI environ).
# Each response is one line: "ok pid=... group=... threads=... n=...".
import os
import queue
import sys
import threading
import time

_threads_wanted = os.environ.get("PFG_APP_THREADS", "1") != "0"
_ticks = [0]
_jobs = queue.Queue()
_started = []


def _metrics():
    while True:
        time.sleep(0.005)
        _ticks[0] += 1          # Python code between sleeps: the thread needs the GIL often


def _consumer():
    while True:
        item = _jobs.get()
        _ticks[0] += len(repr(item))


def _reader():
    r, w = os.pipe()
    _started.append(w)          # keep the write end open: the read never returns
    os.read(r, 1)


def _start():
    if _started or not _threads_wanted:
        return
    _started.append(True)
    for name, f in (("metrics", _metrics), ("consumer", _consumer), ("reader", _reader)):
        threading.Thread(target=f, name="pfg-" + name, daemon=True).start()


_start()


def application(environ, start_response):
    _jobs.put(environ.get("PATH_INFO", "/"))
    try:
        import mod_wsgi
        group = mod_wsgi.application_group or "GLOBAL"
        pgroup = mod_wsgi.process_group or "embedded"
    except ImportError:
        group = pgroup = "-"
    body = "ok pid=%d group=%s process_group=%s threads=%d python=%s\n" % (
        os.getpid(), group, pgroup, threading.active_count(), sys.version.split()[0])
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body.encode()]
