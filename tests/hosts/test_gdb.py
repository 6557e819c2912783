"""GDB (Debian's gdb, which links libpython3.11 and finalizes it at exit), for real,
without and with the guard in LD_PRELOAD.

Cases:
  job          gdb -batch -x JOB --args /bin/echo ...: a Python script that starts daemon
               threads (a 5 ms time.sleep loop, a queue consumer, a reader blocked in
               os.read), sets a Python breakpoint on write(2) whose stop() handler reads a
               register, runs the inferior, then computes with a ThreadPoolExecutor. gdb
               exits with the daemon threads still running. Asserted: with the guard the
               same stdout (pids normalized), stderr and exit status as without, and no
               crash line.
  late-ensure  the pfgtest extension (tools/pfgpy/c/pfgtest.c, built for Debian's
               python3.11) started from gdb's Python: a native thread calls
               PyGILState_Ensure after gdb has finalized Python (woken by a libc atexit
               handler). Without the guard gdb dies of SIGSEGV ("Fatal signal: Segmentation
               fault"); asserted: with the guard gdb exits 0, the thread is reported parked,
               and no crash line. Skipped alone when pfgtest cannot be built (python3.11-dev).

Skips (77) when gdb is missing or does not embed Python.
"""
import os
import re
import signal
import subprocess
import sys
import textwrap

import hosts_common as hc

GDB = "/usr/bin/gdb"
TIMEOUT = 60

JOB = textwrap.dedent('''\
    import concurrent.futures, os, queue, threading, time
    import gdb

    ticks = [0]
    def metrics():
        while True:
            time.sleep(0.005)
            ticks[0] += 1
    jobs = queue.Queue()
    def consumer():
        while True:
            jobs.get()
    def reader():
        r, w = os.pipe()
        reader.w = w            # never written: the read never returns
        os.read(r, 1)
    for f in (metrics, consumer, reader):
        threading.Thread(target=f, name=f.__name__, daemon=True).start()

    sizes = []
    class WriteBreakpoint(gdb.Breakpoint):
        def stop(self):
            sizes.append(int(gdb.parse_and_eval("$rdx")))   # write(2)'s count
            jobs.put(sizes[-1])
            return False
    gdb.execute("set breakpoint pending on")
    WriteBreakpoint("write")
    gdb.execute("run")
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        sums = list(ex.map(lambda n: sum(i * i for i in range(n)), [10, 1000, 100000]))
    print("write sizes", sizes, "sums", sums, "threads", threading.active_count())
    ''')


def status(rc):
    if rc is None:
        return "timeout"
    return "killed by %s" % signal.Signals(-rc).name if rc < 0 else "exit %d" % rc


def run_gdb(run, args, guard):
    """(returncode or None on timeout, stdout, stderr) of gdb -batch -nx ARGS, started in a
    session of its own (killed with everything it started by run.cleanup())."""
    env = hc.host_env(guard, HOME=run.tmp)
    p = run.popen([GDB, "-batch", "-nx"] + args, env, cwd=run.tmp, stdin=subprocess.DEVNULL,
                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = p.communicate(timeout=TIMEOUT)
        rc = p.returncode
    except subprocess.TimeoutExpired:
        hc.kill_session(p.pid)
        out, err = p.communicate()
        rc = None
    return rc, out.decode(errors="replace"), err.decode(errors="replace")


def show(which, r):
    rc, out, err = r
    print("--- %s: %s" % (which, status(rc)))
    for l in out.splitlines()[-12:]:
        print("  out| " + l[:300])
    for l in err.splitlines()[-16:]:
        print("  err| " + l[:300])
    sys.stdout.flush()


def norm(text):
    return re.sub(r"process \d+", "process N", text)


def case_job(run, c):
    job = os.path.join(run.tmp, "job.py")
    with open(job, "w") as f:
        f.write(JOB)
    args = ["-x", job, "--args", "/bin/echo", "hello", "from", "the", "inferior"]
    base = run_gdb(run, args, False)
    show("job without guard", base)
    withg = run_gdb(run, args, True)
    show("job with guard", withg)
    c.check(base[0] == 0 and "write sizes [" in base[1],
            "job without guard: %s, the job ran (the host itself works)" % status(base[0]))
    c.check(withg[0] == base[0], "job with guard: %s (without: %s)"
            % (status(withg[0]), status(base[0])))
    c.check(norm(withg[1]) == norm(base[1]), "job with guard: the same stdout")
    c.check(withg[2] == base[2], "job with guard: the same stderr")
    c.check(not hc.crash_lines(withg[1] + withg[2]), "job with guard: no crash line")


def case_late_ensure(run, c):
    moddir, why = hc.debian_module("pfgtest")
    if moddir is None:
        print("--- late-ensure skipped: %s" % why)
        return
    py = ("python import sys; sys.path.insert(0, %r); import pfgtest; "
          "print('late_ensure thread started:', pfgtest.late_ensure() > 0)" % moddir)
    base = run_gdb(run, ["-ex", py], False)
    show("late-ensure without guard", base)
    withg = run_gdb(run, ["-ex", py], True)
    show("late-ensure with guard", withg)
    crashed = base[0] is not None and base[0] != 0
    print("  (without the guard: %s%s)" % (status(base[0]), ", as expected" if crashed
                                          else "; the crash did not reproduce"))
    c.check(base[1].startswith("late_ensure thread started: True"),
            "late-ensure without guard: the job ran up to the late call")
    c.check(withg[0] == 0, "late-ensure with guard: %s (expected exit 0)" % status(withg[0]))
    # Parked, or ended as this CPython ends late threads (docs/design.md, "Ending or parking").
    c.check(re.search(r"STATE late_ensure (parked|gone)", withg[1] + withg[2]) is not None,
            "late-ensure with guard: the native thread parked or ended (STATE late_ensure)")
    c.check(re.search(r"pyfinguard: (parked|ended) thread", withg[2]) is not None,
            "late-ensure with guard: the guard reported it on stderr")
    c.check(not hc.crash_lines(withg[1] + withg[2]), "late-ensure with guard: no crash line")


def main():
    hc.need_files("gdb", GDB)
    r = subprocess.run([GDB, "-batch", "-nx", "-ex", "python print('py-ok')"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       stdin=subprocess.DEVNULL, timeout=TIMEOUT)
    if b"py-ok" not in r.stdout:
        hc.skip("this gdb does not embed Python: %s" % r.stdout.decode(errors="replace")[:200])
    hc.on_signals_raise()
    print("gdb, guard %s" % hc.library())
    print("packages: %s" % hc.package_versions("gdb", "libpython3.11"))
    run = hc.Sessions("pfg-gdb-")
    c = hc.Checks()
    try:
        case_job(run, c)
        case_late_ensure(run, c)
    finally:
        run.cleanup()
    return c.finish("gdb")


if __name__ == "__main__":
    sys.exit(main())
