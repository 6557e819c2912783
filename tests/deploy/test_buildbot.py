"""Buildbot, for real: a master (sqlite) and a worker on 127.0.0.1, configured with the
output of `pyfinguard env --format buildbot`, run the same crashing step in two builders.

The step runs Debian's /usr/bin/python3.11 (what a Debian buildbot worker runs) with the
pfgtest extension: a native thread calls PyGILState_Ensure after finalization, which is a
SIGSEGV without the guard. Builder "without-guard" runs it plain, builder "with-guard"
gets env=PYFINGUARD_ENV from the snippet. Asserted: the first build FAILS (the step is
killed by SIGSEGV), the second SUCCEEDS, and the guard wrote its parked-thread report to
the --log file the snippet names.

The build is started by `buildbot sendchange` (PB change source); results are read from
the master's sqlite database, so no web UI (buildbot-www, not packaged by Debian) is
needed. Bounded (DEADLINE seconds), and every process started here is killed and the
temporary directory removed, whatever happens.

Skips (status 77) only when the buildbot packages are missing and cannot be installed.
"""
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time

import deploy_common as dc

# A real library for the worker's own LD_PRELOAD (ld.so complains about a missing one).
OTHER_PRELOAD = ([p for p in ("/lib/x86_64-linux-gnu/libm.so.6", "/lib64/libm.so.6",
                              "/lib/libm.so.6") if os.path.exists(p)] + [""])[0]
DEADLINE = 110          # seconds for the whole test, startup included
RESULTS = {0: "SUCCESS", 1: "WARNINGS", 2: "FAILURE", 3: "SKIPPED", 4: "EXCEPTION",
           5: "RETRY", 6: "CANCELLED"}


def ensure_buildbot():
    """Paths of buildbot and buildbot-worker, installing the packages when possible."""
    def find():
        return shutil.which("buildbot"), shutil.which("buildbot-worker")
    bb, bw = find()
    if bb and bw:
        return bb, bw
    if os.geteuid() == 0:
        r = subprocess.run([os.path.join(dc.REPO, "tools", "setup"), "--no-build"])
        bb, bw = find()
        if bb and bw:
            return bb, bw
        why = "tools/setup --no-build exited %d and buildbot is still missing" % r.returncode
    else:
        why = "not root: run tools/setup as root (apt-get install buildbot buildbot-worker)"
    print("SKIP: Debian packages buildbot/buildbot-worker missing: %s" % why)
    raise SystemExit(dc.SKIP)



class Procs(object):
    """Processes this test started, each in its own session; kill() ends exactly them."""

    def __init__(self):
        self.procs = []

    def start(self, argv, log, cwd, env):
        f = open(log, "wb")
        p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, cwd=cwd, env=env,
                             start_new_session=True)
        f.close()
        self.procs.append(p)
        return p

    def kill(self):
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except OSError:
                    pass
        t = time.monotonic() + 10
        for p in self.procs:
            try:
                p.wait(timeout=max(0.1, t - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except OSError:
                    pass
                p.wait()


def tail(path, n=30):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError as e:
        return "(%s)" % e


def main():
    t0 = time.monotonic()
    bb, bw = ensure_buildbot()
    try:
        python = dc.debian_python()
    except dc.NoInterpreter as e:
        print("SKIP: %s" % e)
        raise SystemExit(dc.SKIP)
    moddir = dc.build.build_pfgtest(python)
    tmp = tempfile.mkdtemp(prefix="pfg-buildbot-")
    procs = Procs()

    def interrupted(sig, frame):
        # meson test ends a test that times out with SIGTERM: turn it into an exception so
        # that the finally clause below still kills the master and worker (they run in
        # sessions of their own, out of reach of a signal to our process group).
        raise SystemExit("interrupted by %s" % signal.Signals(sig).name)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, interrupted)
    try:
        return run(tmp, procs, bb, bw, python, moddir, t0)
    finally:
        procs.kill()
        shutil.rmtree(tmp, ignore_errors=True)


def run(tmp, procs, bb, bw, python, moddir, t0):
    def left():
        return DEADLINE - (time.monotonic() - t0)

    guard_log = os.path.join(tmp, "guard.log")
    snip = dc.launch(["env", "--format", "buildbot", "--log", guard_log])
    assert snip.returncode == 0, snip.stderr
    print("pyfinguard env --format buildbot:\n" + snip.stdout)

    # Buildbot's own processes must not inherit a guard from the test runner.
    env = dc.base_env(PYFINGUARD_LIBRARY=None)
    master_dir, worker_dir = os.path.join(tmp, "master"), os.path.join(tmp, "worker")
    pb_port = dc.free_port()
    r = subprocess.run([bb, "create-master", "-q", "-r", master_dir], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=left())
    assert r.returncode == 0, r.stdout.decode(errors="replace")
    r = subprocess.run([bw, "create-worker", "-q", "-r", worker_dir,
                        "127.0.0.1:%d" % pb_port, "w1", "w1pass"], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=left())
    assert r.returncode == 0, r.stdout.decode(errors="replace")

    step = [python.executable, "-c", "import pfgtest; pfgtest.late_ensure()"]
    cfg = textwrap.dedent('''\
        # Generated by tests/deploy/test_buildbot.py
        from buildbot.plugins import changes, schedulers, steps, util, worker

        # ---- begin: output of `pyfinguard env --format buildbot` ----
        %(snippet)s
        # ---- end ----

        STEP = %(step)r
        BASE_ENV = {'PYTHONPATH': %(moddir)r}

        def factory():
            f = util.BuildFactory()
            f.addStep(steps.ShellCommand(name='reproducer', command=STEP, env=BASE_ENV,
                                         timeout=60))
            return f

        c = BuildmasterConfig = {}
        c['buildbotNetUsageData'] = None
        c['title'] = 'pyfinguard deploy test'
        c['buildbotURL'] = 'http://127.0.0.1/'
        c['db'] = {'db_url': 'sqlite:///state.sqlite'}
        c['protocols'] = {'pb': {'port': 'tcp:%(pb)d:interface=127.0.0.1'}}
        c['workers'] = [worker.Worker('w1', 'w1pass', max_builds=1)]
        c['change_source'] = [changes.PBChangeSource(user='change', passwd='changepw')]
        c['schedulers'] = [schedulers.SingleBranchScheduler(
            name='all', change_filter=util.ChangeFilter(branch='main'),
            treeStableTimer=None, builderNames=['without-guard', 'with-guard'])]
        c['builders'] = [
            util.BuilderConfig(name='without-guard', workernames=['w1'], factory=factory()),
            # The guard for every step of this builder, exactly as the snippet suggests.
            util.BuilderConfig(name='with-guard', workernames=['w1'], factory=factory(),
                               env=PYFINGUARD_ENV),
        ]
        ''') % {"snippet": snip.stdout, "step": step, "moddir": moddir, "pb": pb_port}
    with open(os.path.join(master_dir, "master.cfg"), "w") as f:
        f.write(cfg)
    r = subprocess.run([bb, "checkconfig", master_dir], env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=left())
    assert r.returncode == 0, "checkconfig: " + r.stdout.decode(errors="replace")

    master = procs.start([bb, "start", "--nodaemon", master_dir],
                         os.path.join(tmp, "master.out"), tmp, env)
    master_log = os.path.join(master_dir, "twistd.log")
    wait_for(lambda: "BuildMaster is running" in tail(master_log, 200), left,
             "master start", [master_log], master)
    # The worker already preloads something (as a worker with jemalloc would): the
    # snippet's ${LD_PRELOAD} must keep it, after the guard.
    worker_env = dict(env, LD_PRELOAD=OTHER_PRELOAD)
    worker = procs.start([bw, "start", "--nodaemon", worker_dir],
                         os.path.join(tmp, "worker.out"), tmp, worker_env)
    wait_for(lambda: "bot attached" in tail(master_log, 200), left, "worker attach",
             [master_log, os.path.join(worker_dir, "twistd.log")],
             worker)

    r = subprocess.run([bb, "sendchange", "--master", "127.0.0.1:%d" % pb_port,
                        "--auth", "change:changepw", "--who", "pyfinguard-test",
                        "--branch", "main", "--comments", "deploy test", "README"],
                       env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=left())
    assert r.returncode == 0, "sendchange: " + r.stdout.decode(errors="replace")

    db = os.path.join(master_dir, "state.sqlite")
    results = {}

    def done():
        results.clear()
        try:
            con = sqlite3.connect(db, timeout=5)
            rows = con.execute(
                "SELECT builders.name, builds.results, builds.state_string FROM builds "
                "JOIN builders ON builds.builderid = builders.id "
                "WHERE builds.complete_at IS NOT NULL").fetchall()
            con.close()
        except sqlite3.Error:
            return False
        for name, res, state in rows:
            results[name] = (res, state)
        return len(results) == 2

    wait_for(done, left, "both builds to complete", [master_log], master)
    for name, (res, state) in sorted(results.items()):
        print("build %-14s %-8s %s" % (name, RESULTS.get(res, res), state))

    failures = []
    if results["without-guard"][0] != 2:
        failures.append("without-guard: expected FAILURE (the step crashes), got %s" %
                        RESULTS.get(results["without-guard"][0]))
    if results["with-guard"][0] != 0:
        failures.append("with-guard: expected SUCCESS, got %s" %
                        RESULTS.get(results["with-guard"][0]))
    out = step_logs(db)
    for name in sorted(out):
        print("--- step log of %s:\n%s" % (name, out[name][-1500:]))
    # Buildbot's own words for how the step ended, and pfgtest's STATE line (scen.h).
    if "signal 11" not in out.get("without-guard", ""):
        failures.append("without-guard: the step log does not say it was killed by signal 11")
    # Parked, or ended as this CPython ends a late thread (docs/design.md, "Ending or parking").
    if not re.search(r"STATE late_ensure (parked|gone)", out.get("with-guard", "")):
        failures.append("with-guard: the step log lacks 'STATE late_ensure parked' (or 'gone')")
    want = ("LD_PRELOAD=%s %s" % (dc.library(), OTHER_PRELOAD)).rstrip()
    if want not in out.get("with-guard", ""):
        failures.append("with-guard: the step's environment lacks %r" % want)
    report = tail(guard_log, 50)
    print("guard log (PYFINGUARD_LOG from the snippet):\n" + report)
    if not re.search(r"pyfinguard: (parked|ended) thread", report) or "PyGILState_Ensure" not in report:
        failures.append("with-guard: no parked- or ended-thread report for PyGILState_Ensure in %s"
                        % guard_log)
    if failures:
        print("master log tail:\n" + tail(master_log, 40))
        for f in failures:
            print("FAIL: " + f)
        return 1
    print("OK: the step fails without the injection and succeeds with it (%.1f s)"
          % (time.monotonic() - t0))
    return 0


def step_logs(db):
    """builder name -> text of its builds' logs (buildbot stores chunks, maybe compressed)."""
    import bz2
    import zlib
    con = sqlite3.connect(db, timeout=5)
    rows = con.execute(
        "SELECT builders.name, logchunks.content, logchunks.compressed FROM logchunks "
        "JOIN logs ON logchunks.logid = logs.id JOIN steps ON logs.stepid = steps.id "
        "JOIN builds ON steps.buildid = builds.id "
        "JOIN builders ON builds.builderid = builders.id "
        "ORDER BY logs.id, logchunks.first_line").fetchall()
    con.close()
    out = {}
    for name, content, comp in rows:
        if comp == 1:
            content = zlib.decompress(content)
        elif comp == 2:
            content = bz2.decompress(content)
        if isinstance(content, bytes):
            content = content.decode("utf-8", "replace")
        # The header lists the step's whole environment; keep only the guard's part of it.
        content = "\n".join(l for l in content.splitlines() if not l.startswith("h  ") or
                            "LD_PRELOAD" in l or "PYFINGUARD" in l)
        out[name] = out.get(name, "") + content + "\n"
    return out


def wait_for(cond, left, what, logs, proc):
    while not cond():
        if proc.poll() is not None or left() <= 0:
            why = "exited with %s" % proc.returncode if proc.poll() is not None else \
                "timed out"
            msg = "waiting for %s: %s\n" % (what, why)
            for lg in logs:
                msg += "--- %s\n%s" % (lg, tail(lg))
            raise AssertionError(msg)
        time.sleep(0.3)


if __name__ == "__main__":
    sys.exit(main())
