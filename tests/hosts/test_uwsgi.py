"""uWSGI (Debian's uwsgi-core with uwsgi-plugin-python3, which embeds libpython3.11),
for real, without and with the guard in LD_PRELOAD.

A master and 2 workers (2 threads each, --lazy-apps: every worker imports the application
itself, so the application's threads run in the workers) serve a WSGI application on
--http-socket 127.0.0.1:<free port>. Each worker finalizes Python when it ends (uWSGI's
python plugin calls Py_Finalize from its atexit hook) with those threads still there. Life
cycle: start, 3 requests, SIGHUP (graceful reload: workers end, the master re-executes
itself), 3 requests, SIGINT (shutdown). Phases wait for uWSGI's own "WSGI app 0 ... ready"
lines, never for a request.

Cases:
  threads   wsgi_app.py: daemon threads (a 5 ms time.sleep loop, a queue consumer, a reader
            blocked in os.read).
  pybind11  wsgi_pybind11_app.py: a C++ worker (the pfgbind module, built for Debian's
            python3.11) waits in py::gil_scoped_release for a signal that a finalizer sends
            while the worker process finalizes Python. Without the guard the worker
            processes abort ("terminate called without an active exception", most of the
            four worker exits: it is a race); with it the C++ thread is parked. Skipped
            alone when pfgbind cannot be built (python3-pybind11, python3.11-dev).

Asserted, with the guard against without (which must itself be sane):
  * every request served (the same count);
  * no crash line in the log ('terminate called', 'killed by signal', 'Segmentation
    fault', 'Fatal Python error', ...), the same exit status of the master;
  * the stop (SIGINT until every process is gone) no slower than without: at most
    STOP_FACTOR times it plus STOP_SLACK seconds.
Skips (77) when uwsgi-core or uwsgi-plugin-python3 is missing.
"""
import os
import re
import shutil
import signal
import sys
import time

import hosts_common as hc

UWSGI = "/usr/bin/uwsgi-core"
PLUGIN = "/usr/lib/uwsgi/plugins/python3_plugin.so"
WORKERS = 2
REQUESTS_PER_PHASE = 3
REQUEST_TIMEOUT = 5.0
PHASE_TIMEOUT = 25.0
STOP_TIMEOUT = 30.0
STOP_FACTOR, STOP_SLACK = 1.25, 2.0
READY = re.compile(r"WSGI app 0 \(mountpoint=''\) ready")


def wait_ready(log, n, deadline, proc):
    while time.monotonic() < deadline:
        if len(READY.findall(hc.read(log))) >= n:
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.05)
    return False


def requests(port, phase, res, paths):
    for i, path in enumerate(paths):
        st, body = hc.http_get(port, path, timeout=REQUEST_TIMEOUT)
        good = st == 200 and body.startswith("ok ")
        res["served"] += good
        res["sent"] += 1
        res["requests"].append("%s %s: %s %s" % (phase, path, st, body.strip()[:120]))
        if st is None and "imed out" in body:
            res["requests"].append("%s: %d more not sent (a request timed out)"
                                   % (phase, len(paths) - i - 1))
            res["sent"] += len(paths) - i - 1
            break


def run_host(guard, case, app, pythonpath=None):
    which = "%s, with guard" % case if guard else "%s, without guard" % case
    run = hc.Sessions("pfg-uwsgi-%s-" % case)
    res = {"which": which, "served": 0, "sent": 0, "requests": [], "ready": [],
           "procs": (0, 0, 0), "stop_s": None, "stopped": False, "rc": None}
    try:
        root = run.tmp
        port = hc.free_port()
        shutil.copy(os.path.join(hc.HERE, app), os.path.join(root, "app.py"))
        log = os.path.join(root, "uwsgi.log")
        argv = [UWSGI, "--plugin", "python3", "--http-socket", "127.0.0.1:%d" % port,
                "--master", "--processes", str(WORKERS), "--threads", "2", "--lazy-apps",
                "--enable-threads", "--wsgi-file", os.path.join(root, "app.py"),
                "--chdir", root, "--logto", log]
        if pythonpath:
            argv += ["--pythonpath", pythonpath]
        p = run.popen(argv, hc.host_env(guard), cwd=root)

        t = time.monotonic()
        ok = wait_ready(log, WORKERS, t + PHASE_TIMEOUT, p)
        res["ready"].append(("start", ok, round(time.monotonic() - t, 2)))
        requests(port, "start", res, ["/start/%d" % i for i in range(REQUESTS_PER_PHASE)])

        t = time.monotonic()
        if p.poll() is None:
            os.kill(p.pid, signal.SIGHUP)
        ok = wait_ready(log, 2 * WORKERS, t + PHASE_TIMEOUT, p)
        res["ready"].append(("reload", ok, round(time.monotonic() - t, 2)))
        requests(port, "reload", res, ["/reload/%d" % i for i in range(REQUESTS_PER_PHASE)])

        res["procs"] = hc.guard_mapping(hc.session_pids(p.pid))
        t = time.monotonic()
        if p.poll() is None:
            os.kill(p.pid, signal.SIGINT)
        while time.monotonic() - t < STOP_TIMEOUT:
            if not hc.session_pids(p.pid):
                res["stopped"] = True
                break
            time.sleep(0.02)
        res["stop_s"] = round(time.monotonic() - t, 2)
        try:
            res["rc"] = p.wait(timeout=1)
        except Exception:
            res["rc"] = None
        res["log"] = hc.read(log)
        return res
    finally:
        run.cleanup()


def summarize(res):
    log = res["log"]
    res["crashes"] = hc.crash_lines(log)
    print("--- %s" % res["which"])
    print("  ready after (s): %s" % ", ".join("%s=%s%s" % (a, s, "" if ok else " NOT READY")
                                             for a, ok, s in res["ready"]))
    print("  requests served: %d of %d" % (res["served"], res["sent"]))
    for r in res["requests"]:
        print("    " + r)
    print("  before stop: %d uWSGI processes, %d mapping the guard, %d mapping libpython3.11"
          % res["procs"])
    print("  stop: %s s (%s), master exit status %s" % (
        res["stop_s"], "all processes gone" if res["stopped"] else "NOT STOPPED, killed",
        res["rc"]))
    print("  log: %d lines, %d crash lines, %d parked-thread reports" % (
        len(log.splitlines()), len(res["crashes"]), len(re.findall(r"pyfinguard: (?:parked|ended) thread", log))))
    for l in res["crashes"][:8]:
        print("    " + l[:300])
    for l in log.splitlines():
        if "pyfinguard" in l or "buried" in l or "DAMN" in l or "goodbye" in l:
            print("    | " + l[:300])
    if os.environ.get("PFG_HOSTS_VERBOSE") == "1":
        for l in log.splitlines():
            print("    || " + l[:400])
    sys.stdout.flush()


def main():
    hc.need_files("uwsgi-core", UWSGI)
    hc.need_files("uwsgi-plugin-python3", PLUGIN)
    hc.on_signals_raise()
    print("uwsgi, guard %s" % hc.library())
    print("packages: %s" % hc.package_versions("uwsgi-core", "uwsgi-plugin-python3",
                                               "libpython3.11"))
    c = hc.Checks()
    case(c, "threads", "wsgi_app.py")
    moddir, why = hc.debian_module("pfgbind")
    if moddir is None:
        print("--- pybind11 case skipped: %s" % why)
    else:
        case(c, "pybind11", "wsgi_pybind11_app.py", moddir)
    return c.finish("uwsgi")


def case(c, name, app, pythonpath=None):
    base = run_host(False, name, app, pythonpath)
    summarize(base)
    withg = run_host(True, name, app, pythonpath)
    summarize(withg)

    print("--- checks (%s)" % name)
    c.check(base["served"] == base["sent"] and base["sent"] > 0,
            "%s without guard: %d of %d requests served (the host itself works)"
            % (name, base["served"], base["sent"]))
    c.check(base["stopped"], "%s without guard: stopped within %d s" % (name, STOP_TIMEOUT))
    c.check(base["procs"][1] == 0,
            "%s without guard: the guard mapped in no uWSGI process" % name)
    c.check(withg["procs"][0] > 0 and withg["procs"][1] == withg["procs"][0],
            "%s with guard: the guard mapped in every uWSGI process (%d of %d)"
            % (name, withg["procs"][1], withg["procs"][0]))
    c.check(withg["served"] == base["served"], "%s with guard: %d requests served (without: %d)"
            % (name, withg["served"], base["served"]))
    c.check(not withg["crashes"], "%s with guard: no crash line in the log (%d; without: %d)"
            % (name, len(withg["crashes"]), len(base["crashes"])))
    c.check(withg["rc"] == base["rc"], "%s with guard: master exit status %s (without: %s)"
            % (name, withg["rc"], base["rc"]))
    limit = round(STOP_FACTOR * (base["stop_s"] or 0) + STOP_SLACK, 2)
    c.check(withg["stopped"] and withg["stop_s"] <= limit,
            "%s with guard: stop took %s s, no slower than without (%s s; limit %s x + %s s"
            " = %s s)" % (name, withg["stop_s"], base["stop_s"], STOP_FACTOR, STOP_SLACK, limit))
    print("STOP_TIMES uwsgi-%s without=%s with=%s" % (name, base["stop_s"], withg["stop_s"]))


if __name__ == "__main__":
    sys.exit(main())
