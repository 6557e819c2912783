#!/usr/bin/env python3
"""Machine-readable reports, the syslog destination and strict mode on every interpreter.

    /usr/bin/python3 tests/reports/reports.py json   --lib build/shim/libpyfinguard.so
    /usr/bin/python3 tests/reports/reports.py syslog --lib build/shim/libpyfinguard.so
    /usr/bin/python3 tests/reports/reports.py strict --lib build/shim/libpyfinguard.so
    options: --scenario a,c (json) --interp 3.11,debian --build-dir DIR --jobs N

json    every scenario of tests/matrix.py, guarded, with PYFINGUARD_REPORT_FORMAT=json and
        PYFINGUARD_LOG=stderr, on every interpreter: every stderr line of the guard is one
        JSON object of at most 4096 bytes; every field of each park and of the exit
        summary is present, of its type and plausible (pid is the child's, time is now,
        host and program are the child's, python is the interpreter's version, frames'
        build-ids are those of the files, read back with readelf, libc's in every report).
syslog  a real rsyslogd started here in the foreground on a private socket (temporary
        config, nothing else of the machine's syslog touched): each interpreter's late
        PyGILState_Ensure scenario with PYFINGUARD_LOG=syslog, JSON and text; the reports
        are read back from the file rsyslogd wrote (tag pyfinguard, the child's pid,
        severity warning, the JSON parses), stderr keeps only the summary, and a run
        without PYFINGUARD_LOG=syslog sends nothing. Skipped (77) when rsyslogd is missing.
strict  PYFINGUARD_STRICT=3: the late PyGILState_Ensure scenario exits 3 (not its own
        7) with its stdout intact and one 'strict' line; an ordinary program whose daemon
        threads are parked routinely at exit (tests/reports/daemons_exit0.py) keeps status
        0 and exactly its output without the guard, and its routine parks are shown
        (PYFINGUARD_LOG=file) not to count.

One PASS / FAIL / SKIP line per cell (interpreter, or scenario x interpreter); exit 1 if
anything failed, 77 if everything was skipped.
"""
import argparse
import datetime
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests"))
import matrix  # noqa: E402  (also puts tools/ on sys.path)
from pfgpy import build, interpreters, run as pfgrun, runner, scenario  # noqa: E402

LINE_MAX = 4096  # PIPE_BUF: the guard's JSON line limit
ISO_RE = re.compile(r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.(\d{3})Z$")
HEX_RE = re.compile(r"^0x[0-9a-f]+$")
REASONS = {"thread state of an earlier runtime", "runtime finalizing", "runtime finalized",
           "CPython terminating the thread", "waiting in take_gil past the point of no return",
           "CPython hanging the thread"}


def api_names():
    names = set()
    with open(os.path.join(REPO, "shim", "intercepted.def")) as f:
        for m in re.finditer(r"^PFG_(?:PY|LIBC|LIBC_CONDVAR)\([^,]+,\s*(\w+),", f.read(), re.M):
            names.add(m.group(1))
    return names


APIS = api_names()


def run(cmd, env, timeout=60):
    return pfgrun.run(cmd, env=env, timeout=timeout, cwd=matrix.SCEN)


def tail(r):
    return r.tail(12, 300)


_ids = {}


def real_build_id(path):
    """The GNU build-id of a file, from readelf (not from the guard's code)."""
    if path not in _ids:
        try:
            out = subprocess.run(["readelf", "-n", "--wide", path], stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL, timeout=60).stdout.decode()
            m = re.search(r"Build ID: ([0-9a-f]+)", out)
            _ids[path] = m.group(1) if m else None
        except (OSError, subprocess.TimeoutExpired):
            _ids[path] = None
    return _ids[path]


def parse_time(s):
    m = ISO_RE.match(s) if isinstance(s, str) else None
    if not m:
        return None
    y, mo, d, h, mi, se, ms = (int(x) for x in m.groups())
    dt = datetime.datetime(y, mo, d, h, mi, se, ms * 1000, tzinfo=datetime.timezone.utc)
    return dt.timestamp()


def check_common(ev, r, cmd, it, problems):
    """Fields every JSON line has."""
    want = {"event": str, "time": str, "host": str, "program": str, "pid": int, "python": str}
    for k, t in want.items():
        if not isinstance(ev.get(k), t) or isinstance(ev.get(k), bool):
            problems.append("%s: %r is not %s" % (k, ev.get(k), t.__name__))
    ts = parse_time(ev.get("time"))
    if ts is None or not (r.started - 2 <= ts <= r.ended + 2):
        problems.append("time %r is not ISO-8601 UTC within the run" % ev.get("time"))
    if ev.get("pid") != r.pid:
        problems.append("pid %r is not the child's %d" % (ev.get("pid"), r.pid))
    if ev.get("host") != os.uname().nodename:
        problems.append("host %r is not %r" % (ev.get("host"), os.uname().nodename))
    if ev.get("program") != os.path.basename(cmd[0]):
        problems.append("program %r is not %r" % (ev.get("program"), os.path.basename(cmd[0])))
    if ev.get("python") != it.version_str:
        problems.append("python %r is not %r" % (ev.get("python"), it.version_str))


def check_park(ev, r, cmd, it, log, problems, seen_ids):
    check_common(ev, r, cmd, it, problems)
    p = problems
    if not isinstance(ev.get("tid"), int) or ev["tid"] <= 0:
        p.append("tid %r" % ev.get("tid"))
    th = ev.get("thread")
    if not isinstance(th, str) or not 1 <= len(th.encode()) <= 15:
        p.append("thread %r is not a thread name (1-15 bytes)" % th)
    if ev.get("api") not in APIS:
        p.append("api %r is not an intercepted function" % ev.get("api"))
    if ev.get("reason") not in REASONS:
        p.append("reason %r" % ev.get("reason"))
    g = ev.get("generation")
    if not isinstance(g, int) or isinstance(g, bool) or not 1 <= g <= 100:
        p.append("generation %r" % g)
    if ev.get("phase") not in ("running", "finalizing", "finalized"):
        p.append("phase %r" % ev.get("phase"))
    ms = ev.get("ms_since_finalization", "missing")
    if not (ms is None or (isinstance(ms, (int, float)) and not isinstance(ms, bool)
                           and 0 <= ms <= 1000 * (r.ended - r.started + 1))):
        p.append("ms_since_finalization %r" % ms)
    if ms is None and ev.get("reason") != "runtime finalized":
        p.append("no finalization seen, yet reason %r" % ev.get("reason"))
    if not isinstance(ev.get("routine"), bool):
        p.append("routine %r" % ev.get("routine"))
    # A native thread's first PyGILState_Ensure after Py_FinalizeEx is never routine.
    if ev.get("api") == "PyGILState_Ensure" and ev.get("reason") == "runtime finalized" \
            and ev.get("routine") is not False:
        p.append("a late PyGILState_Ensure classified routine")
    if ev.get("mode") != "auto":
        p.append("mode %r" % ev.get("mode"))
    # Ended (pthread_exit, as this CPython ends late threads) or parked: docs/design.md.
    if not isinstance(ev.get("ended"), bool) or not isinstance(ev.get("native"), bool):
        p.append("ended %r / native %r" % (ev.get("ended"), ev.get("native")))
    frames, omitted = ev.get("frames"), ev.get("frames_omitted")
    if not isinstance(frames, list) or not isinstance(omitted, int) or omitted < 0 or \
            len(frames) + omitted > 24 or len(frames) + omitted == 0:
        p.append("frames %r / frames_omitted %r" % (type(frames).__name__, omitted))
        return
    for i, f in enumerate(frames):
        keys = {"module", "offset", "build_id", "symbol", "symbol_offset"}
        if not isinstance(f, dict) or set(f) != keys:
            p.append("frame %d: keys %r" % (i, sorted(f) if isinstance(f, dict) else f))
            continue
        if not (f["module"] is None or (isinstance(f["module"], str) and f["module"].startswith("/"))):
            p.append("frame %d: module %r" % (i, f["module"]))
        if not isinstance(f["offset"], str) or not HEX_RE.match(f["offset"]):
            p.append("frame %d: offset %r" % (i, f["offset"]))
        elif f["module"] and int(f["offset"], 16) > os.path.getsize(f["module"]) + (64 << 20):
            p.append("frame %d: offset %s beyond %s" % (i, f["offset"], f["module"]))
        if (f["symbol"] is None) != (f["symbol_offset"] is None) or \
                (f["symbol"] is not None and (not isinstance(f["symbol"], str) or not f["symbol"]
                                              or not HEX_RE.match(str(f["symbol_offset"])))):
            p.append("frame %d: symbol %r+%r" % (i, f["symbol"], f["symbol_offset"]))
        bid = f["build_id"]
        if bid is not None:
            if not isinstance(bid, str) or not re.match(r"^([0-9a-f]{2}){8,64}$", bid):
                p.append("frame %d: build_id %r is not hex" % (i, bid))
            elif f["module"]:
                real = real_build_id(f["module"])
                if real != bid:
                    p.append("frame %d: build_id %s of %s, readelf says %s" % (i, bid, f["module"], real))
                else:
                    seen_ids.add(os.path.basename(f["module"]))
    # Every thread starts in libc (start_thread, clone3): its build-id must be there and
    # right, unless frames were cut off before it.
    if omitted == 0 and not any(f.get("module", "") and "/libc.so" in f["module"] and f["build_id"]
                                for f in frames if isinstance(f, dict)):
        p.append("no frame in libc with its build-id")


def check_exit(ev, r, cmd, it, nparks, nroutine, log, problems):
    check_common(ev, r, cmd, it, problems)
    for k in ("parked", "present", "reported", "routine"):
        v = ev.get(k)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            problems.append("exit %s %r" % (k, v))
    if problems:
        return
    # A late thread is parked (and present at exit), or ended as this CPython ends it
    # (docs/design.md, "Ending or parking"); each has a "park" line.
    ended = ev.get("ended", 0)
    if ev["parked"] + ended < max(1, nparks) or ev["present"] != ev["parked"]:
        problems.append("exit: parked %d, present %d, ended %d, %d park lines" % (
            ev["parked"], ev["present"], ended, nparks))
    if ev["reported"] != nparks or ev["routine"] != nroutine:
        problems.append("exit: reported %d, routine %d; the lines say %d and %d routine" % (
            ev["reported"], ev["routine"], nparks, nroutine))
    want_log = {"stderr": ("stderr", None), "syslog": ("syslog", log[1] if log else None)}
    exp = want_log.get(log[0] if log else "stderr")
    if (ev.get("log"), ev.get("log_path")) != exp:
        problems.append("exit: log %r %r, want %r" % (ev.get("log"), ev.get("log_path"), exp))


def json_lines(text, problems, where):
    """JSON objects from the guard's lines; anything else from the guard is a problem."""
    evs = []
    for line in text.splitlines():
        if line.startswith("{"):
            if len(line.encode()) + 1 > LINE_MAX:
                problems.append("%s: a line of %d bytes" % (where, len(line.encode()) + 1))
            try:
                evs.append(json.loads(line))
            except ValueError as e:
                problems.append("%s: not JSON (%s): %s" % (where, e, line[:200]))
        elif "pyfinguard" in line:
            problems.append("%s: a text line from the guard: %s" % (where, line[:200]))
    return evs


class Cell(runner.Cell):
    """A case that passes unless a check says otherwise; its reason says what was seen."""
    reason_fmt = None

    def __init__(self, name):
        runner.Cell.__init__(self, name, runner.PASS)

    def head(self):
        return "%-4s %-50s" % (self.status, self.name)

    def body(self):
        return " " + self.reason


def guarded_env(lib, extra, more):
    env = matrix.clean_env()
    env.update(extra)
    env["LD_PRELOAD"] = lib
    env.update(more)
    return env


def skip_reason(sc, it):
    why = sc.applies(it)
    return why


# ------------------------------------------------------------------------------- json

def prepare_or_skip(c, sc, it, build_dir, why):
    """(cmd, extra) for scenario sc on it, or None with cell c marked SKIP (why, or the
    build saying the scenario cannot be built for it)."""
    if why:
        c.status, c.reason = "SKIP", why
        return None
    try:
        return matrix.prepare(sc, it, build_dir)
    except build.Unsupported as e:
        c.status, c.reason = "SKIP", str(e)
        return None


def json_cell(sc, it, lib, build_dir):
    c = Cell("%s %s" % (sc.id, it.name))
    prepared = prepare_or_skip(c, sc, it, build_dir, skip_reason(sc, it))
    if prepared is None:
        return c
    cmd, extra = prepared
    r = run(cmd, guarded_env(lib, extra, {"PYFINGUARD_LOG": "stderr",
                                          "PYFINGUARD_REPORT_FORMAT": "json"}))
    problems = []
    if r.timed_out or r.status != sc.status:
        problems.append("%s, not the program's own %d" % (r.describe(), sc.status))
    evs = json_lines(r.stderr, problems, "stderr")
    parks = [e for e in evs if e.get("event") == "park"]
    exits = [e for e in evs if e.get("event") == "exit"]
    ids = set()
    if sc.ordinary:
        if evs:
            problems.append("an ordinary program got %d JSON line(s)" % len(evs))
    else:
        if not parks:
            problems.append("no park line")
        if len(exits) != 1 or evs[-1:] != exits:
            problems.append("%d exit lines (want 1, last)" % len(exits))
        states = len([s for s in scenario.STATE_RE.findall(r.stdout) if s[1] in ("parked", "gone")])
        if len(parks) < states:
            problems.append("%d park lines, the program saw %d parked or ended" % (len(parks), states))
        for i, e in enumerate(parks):
            pp = []
            check_park(e, r, cmd, it, None, pp, ids)
            problems += ["park %d: %s" % (i + 1, x) for x in pp]
        if len(exits) == 1:
            nroutine = sum(1 for e in parks if e.get("routine") is True)
            check_exit(exits[0], r, cmd, it, len(parks), nroutine, None, problems)
    if problems:
        c.status, c.reason = "FAIL", "; ".join(problems[:6]) + (" ..." if len(problems) > 6 else "")
        c.detail = "    cmd: %s\n%s" % (" ".join(cmd), tail(r))
    else:
        c.reason = "%d park line(s), build-ids checked: %s" % (len(parks), ", ".join(sorted(ids)) or "-") \
            if not sc.ordinary else "no JSON lines (nothing parked)"
    return c


def cmd_json(args, lib, its, build_dir):
    scs = matrix.SCENARIOS
    if args.scenario:
        want = [w.strip() for w in args.scenario.split(",") if w.strip()]
        scs = [s for s in scs if s.id in want or s.letter in want]
    return runner.execute(json_cell, [(s, i, lib, build_dir) for s in scs for i in its],
                          args.jobs)


# ----------------------------------------------------------------------------- syslog

def late_scenario(it):
    """The late PyGILState_Ensure scenario this interpreter can run. The embedder first: it
    calls Py_FinalizeEx itself, so the late call meets a FINALIZED runtime on every
    version (3.13's python finalizes through an internal function, and the guard then
    sees its pfgtest thread during FINALIZING, a routine park: docs/diagnostics.md)."""
    for sid in ("c-late-ensure", "f-late-ensure"):
        sc = [s for s in matrix.SCENARIOS if s.id == sid][0]
        if not sc.applies(it):
            return sc
    return None


RSYSLOG_CONF = """\
global(workDirectory="{d}")
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket="{sock}")
template(name="pfg" type="string"
         string="%hostname%\\t%programname%\\t%procid%\\t%syslogseverity-text%\\t%msg%\\n")
*.* action(type="omfile" file="{out}" template="pfg")
# As docs/diagnostics.md shows it: the JSON reports alone, one per line.
template(name="pyfinguard_json" type="string" string="%msg:2:$%\\n")
if $programname == "pyfinguard" and $msg startswith " {{" then
    action(type="omfile" file="{json}" template="pyfinguard_json")
"""


class Rsyslog(object):
    """rsyslogd in the foreground on a private socket, with a temporary config."""

    def __init__(self, d):
        self.d = d
        self.sock = os.path.join(d, "log.sock")
        self.out = os.path.join(d, "messages")
        self.json = os.path.join(d, "pyfinguard.json")
        conf = os.path.join(d, "rsyslog.conf")
        with open(conf, "w") as f:
            f.write(RSYSLOG_CONF.format(d=d, sock=self.sock, out=self.out, json=self.json))
        exe = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
        self.log = open(os.path.join(d, "rsyslogd.out"), "w")
        self.p = subprocess.Popen([exe, "-n", "-f", conf, "-i", os.path.join(d, "rsyslogd.pid")],
                                  stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 15
        while not os.path.exists(self.sock):
            if self.p.poll() is not None or time.time() > deadline:
                raise RuntimeError("rsyslogd did not create %s (status %s): %s" % (
                    self.sock, self.p.poll(), open(os.path.join(d, "rsyslogd.out")).read()[-500:]))
            time.sleep(0.05)

    def records(self, pid, want, timeout=10):
        """Records of pid (hostname, programname, procid, severity, msg), once `want` came."""
        deadline = time.time() + timeout
        while True:
            recs = []
            if os.path.exists(self.out):
                with open(self.out, errors="replace") as f:
                    for line in f:
                        parts = line.rstrip("\n").split("\t", 4)
                        if len(parts) == 5 and parts[2] == str(pid):
                            parts[4] = parts[4].lstrip(" ")
                            recs.append(parts)
            if len(recs) >= want or time.time() > deadline:
                return recs
            time.sleep(0.1)

    def stop(self):
        self.p.terminate()
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
        self.log.close()


def syslog_cell(it, lib, build_dir, rs):
    c = Cell("syslog %s" % it.name)
    if it.skip:
        return c.skip(it.skip)
    sc = late_scenario(it)
    prepared = prepare_or_skip(c, sc, it, build_dir, None if sc else "no late-ensure scenario applies")
    if prepared is None:
        return c
    cmd, extra = prepared
    problems, notes = [], []
    host = os.uname().nodename
    for fmt in ("json", "text"):
        r = run(cmd, guarded_env(lib, extra, {"PYFINGUARD_LOG": "syslog", "PYFINGUARD_REPORT_FORMAT": fmt,
                                              "PYFINGUARD_SYSLOG_SOCKET": rs.sock}))
        where = "%s %s" % (sc.id, fmt)
        if r.timed_out or r.status != sc.status:
            problems.append("%s: %s, not %d" % (where, r.describe(), sc.status))
        recs = rs.records(r.pid, 2)
        parks = [x for x in recs if x[3] == "warning"]
        sums = [x for x in recs if x[3] == "notice"]
        if len(parks) != 1 or len(sums) != 1 or len(recs) != 2:
            problems.append("%s: %d record(s) of pid %d in rsyslogd's file (want a warning and a notice)"
                            % (where, len(recs), r.pid))
            c.detail = tail(r)
            continue
        for x in recs:
            if x[0] != host or x[1] != "pyfinguard" or x[2] != str(r.pid):
                problems.append("%s: record host/program/pid %r, want %r pyfinguard %d" % (where, x[:3], host, r.pid))
        if fmt == "json":
            evs = []
            for x in recs:
                try:
                    evs.append(json.loads(x[4]))
                except ValueError as e:
                    problems.append("%s: message not JSON (%s): %s" % (where, e, x[4][:200]))
            if len(evs) == 2:
                pp = []
                check_park(evs[0], r, cmd, it, ("syslog", rs.sock), pp, set())
                check_exit(evs[1], r, cmd, it, 1, 0, ("syslog", rs.sock), pp)
                problems += ["%s: %s" % (where, x) for x in pp]
            # stderr: only the summary, in JSON
            err = [l for l in r.stderr.splitlines() if "pyfinguard" in l or l.startswith("{")]
            if len(err) != 1 or json.loads(err[0]).get("log") != "syslog":
                problems.append("%s: stderr %r, want the exit line only" % (where, err[:3]))
        else:
            if not parks[0][4].startswith(("pyfinguard: parked thread ", "pyfinguard: ended thread ")) or \
                    "PyGILState_Ensure" not in parks[0][4]:
                problems.append("%s: report %r" % (where, parks[0][4][:120]))
            if "parked thread" in r.stderr or "ended thread" in r.stderr or \
                    "reported to syslog at %s" % rs.sock not in r.stderr:
                problems.append("%s: stderr %r" % (where, r.stderr[-300:]))
        notes.append("%s: %d records" % (fmt, len(recs)))
    # Not selected: nothing is sent (PYFINGUARD_SYSLOG_SOCKET alone selects nothing).
    r = run(cmd, guarded_env(lib, extra, {"PYFINGUARD_SYSLOG_SOCKET": rs.sock}))
    if "parked thread" not in r.stderr and "ended thread" not in r.stderr:
        problems.append("default destination: no report on stderr")
    if rs.records(r.pid, 1, timeout=1.5):
        problems.append("default destination: records of pid %d reached syslog" % r.pid)
    if problems:
        c.status, c.reason = "FAIL", "; ".join(problems[:6])
        c.detail = c.detail or tail(r)
    else:
        c.reason = "%s via %s; %s; default: nothing sent" % (sc.id, "rsyslogd", ", ".join(notes))
    return c


def cmd_syslog(args, lib, its, build_dir):
    exe = shutil.which("rsyslogd") or ("/usr/sbin/rsyslogd" if os.access("/usr/sbin/rsyslogd", os.X_OK) else None)
    if exe is None:
        print("SKIP: rsyslogd not found (Debian package rsyslog; tools/setup installs it)")
        return None
    d = tempfile.mkdtemp(prefix="pfg-syslog-")
    try:
        rs = Rsyslog(d)
    except (RuntimeError, OSError) as e:
        print("SKIP: rsyslogd could not be started: %s" % e)
        shutil.rmtree(d, ignore_errors=True)
        return None
    try:
        cells = runner.execute(syslog_cell, [(i, lib, build_dir, rs) for i in its], args.jobs)
        if args.show_aggregate:
            print(open(rs.out).read())
        return cells + runner.execute(aggregate_cell, [(rs,)], 1)
    finally:
        rs.stop()
        shutil.rmtree(d, ignore_errors=True)


# The one-liner docs/diagnostics.md shows: parks per host and program from JSON lines
# (the message part of the syslog records here; a PYFINGUARD_LOG file in JSON as is).
AGGREGATE_JQ = ('jq -r \'select(.event == "park") | "\\(.host) \\(.program)"\' %s | sort | uniq -c')


def aggregate_cell(rs):
    c = Cell("syslog aggregate (rsyslog filter and jq one-liner of docs/diagnostics.md)")
    if not shutil.which("jq"):
        c.status, c.reason = "SKIP", "jq not installed"
        return c
    # What the parks were, from the full records; the JSON-only file must hold exactly
    # those messages, and the one-liner must count them per host and program.
    want, msgs = {}, []
    with open(rs.out, errors="replace") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t", 4)
            if len(parts) == 5 and parts[1] == "pyfinguard" and parts[4].lstrip().startswith("{"):
                msgs.append(parts[4].lstrip())
                ev = json.loads(msgs[-1])
                if ev.get("event") == "park":
                    k = "%s %s" % (ev["host"], ev["program"])
                    want[k] = want.get(k, 0) + 1
    have = open(rs.json).read().splitlines() if os.path.exists(rs.json) else []
    out = subprocess.run(["sh", "-c", AGGREGATE_JQ % shlex.quote(rs.json)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    got = {}
    for line in out.stdout.decode().splitlines():
        n, _, k = line.strip().partition(" ")
        got[k] = int(n)
    if have != msgs or not msgs:
        c.status, c.reason = "FAIL", "the JSON-only file has %d lines, the records %d JSON messages" % (
            len(have), len(msgs))
    elif out.returncode != 0 or got != want or not got:
        c.status, c.reason = "FAIL", "jq gave %r, want %r (%s)" % (got, want, out.stderr.decode()[-200:])
    else:
        c.reason = "%d JSON lines; %s" % (len(have), "; ".join("%d x %s" % (n, k) for k, n in sorted(got.items())))
    return c


# ----------------------------------------------------------------------------- strict

def norm(t):
    # Numbers vary; so does the order of lines two threads print (late_ensure.c's
    # "native: calling ..." and "MARK main: joining ...").
    return sorted(re.sub(r"\d+", "N", t).splitlines())


def strict_cell(it, lib, build_dir):
    c = Cell("strict %s" % it.name)
    if it.skip:
        return c.skip(it.skip)
    sc = late_scenario(it)
    problems, notes = [], []
    if sc is not None:
        try:
            cmd, extra = matrix.prepare(sc, it, build_dir)
        except build.Unsupported as e:
            c.status, c.reason = "SKIP", str(e)
            return c
        base = run(cmd, guarded_env(lib, extra, {}))
        strict = run(cmd, guarded_env(lib, extra, {"PYFINGUARD_STRICT": "3"}))
        sj = run(cmd, guarded_env(lib, extra, {"PYFINGUARD_STRICT": "3", "PYFINGUARD_REPORT_FORMAT": "json"}))
        if base.status != sc.status:
            problems.append("%s without strict: %s, not %d" % (sc.id, base.describe(), sc.status))
        if strict.status != 3 or sj.status != 3:
            problems.append("%s strict: %s / json %s, want exit 3" % (sc.id, strict.describe(), sj.describe()))
        # stdio is flushed before _exit: the program's stdout is intact.
        if norm(strict.stdout) != norm(base.stdout) or "STATE" not in strict.stdout:
            problems.append("%s strict: stdout differs from the run without strict" % sc.id)
        want = "pyfinguard: strict: exit status 3 instead of %d: 1 thread stopped (ended or parked) that the rules report " \
               "(PYFINGUARD_STRICT=3)" % sc.status
        if strict.stderr.splitlines()[-1:] != [want]:
            problems.append("%s strict: last stderr line %r" % (sc.id, strict.stderr.splitlines()[-1:]))
        last = sj.stderr.splitlines()[-1:] or ["{}"]
        try:
            ev = json.loads(last[0])
        except ValueError:
            ev = {}
        if (ev.get("event"), ev.get("status"), ev.get("exit_status"), ev.get("reported_parks"), ev.get("pid")) != \
                ("strict", 3, sc.status, 1, sj.pid):
            problems.append("%s strict json: last line %r" % (sc.id, last[0][:200]))
        notes.append("%s: %d -> 3" % (sc.id, base.status))
    if it.can_embed:
        # A park during exit(): a C++ static destructor joins a worker whose first
        # PyGILState_Ensure comes after Py_FinalizeEx. The strict handler runs after the
        # destructors, so it counts (docs/diagnostics.md).
        jd = [s for s in matrix.SCENARIOS if s.id == "j-join-dtor"][0]
        try:
            cmd, extra = matrix.prepare(jd, it, build_dir)
            r = run(cmd, guarded_env(lib, extra, {"PYFINGUARD_STRICT": "3"}))
            if r.status != 3 or not re.search(r"^STATE worker (parked|gone)", r.stdout, re.M):
                problems.append("j-join-dtor strict: %s, want exit 3 and the worker parked or ended"
                                % r.describe())
            else:
                notes.append("j-join-dtor: 3")
        except build.Unsupported as e:
            notes.append("j-join-dtor: %s" % e)
    if it.can_run_programs:
        cmd = [it.executable, "-s", os.path.join(HERE, "daemons_exit0.py")]
        plain = matrix.clean_env()
        b = run(cmd, plain)
        s = run(cmd, guarded_env(lib, {}, {"PYFINGUARD_STRICT": "3"}))
        if (b.status, b.stdout, b.stderr) != (0, "main: 5 daemon threads still running; exit 0\n", ""):
            problems.append("daemons without the guard: %s %r %r" % (b.describe(), b.stdout, b.stderr[-200:]))
        if (s.status, s.stdout, s.stderr) != (b.status, b.stdout, b.stderr):
            problems.append("daemons strict: %s %r %r differ from without the guard" % (s.describe(), s.stdout, s.stderr[-200:]))
        # The same under strict with every park logged: they happen, they are routine.
        fd, log = tempfile.mkstemp(prefix="pfg-strict-", suffix=".log")
        os.close(fd)
        os.unlink(log)
        try:
            n, routine = 0, 0
            for _ in range(3):  # the sleepers park when they wake past the point of no return
                lr = run(cmd, guarded_env(lib, {}, {"PYFINGUARD_STRICT": "3", "PYFINGUARD_LOG": log,
                                                    "PYFINGUARD_REPORT_FORMAT": "json"}))
                evs = [json.loads(l) for l in open(log)] if os.path.exists(log) else []
                os.path.exists(log) and os.unlink(log)
                n = sum(1 for e in evs if e.get("event") == "park")
                routine = sum(1 for e in evs if e.get("event") == "park" and e.get("routine") is True)
                if lr.status != 0 or "pyfinguard: strict" in lr.stderr or '"event":"strict"' in lr.stderr:
                    problems.append("daemons strict + log: %s %r" % (lr.describe(), lr.stderr[-200:]))
                    break
                if n:
                    break
            if n == 0 or routine != n:
                problems.append("daemons strict + log: %d park(s), %d routine (want >= 1, all routine)" % (n, routine))
            notes.append("daemons: exit 0 unchanged, %d routine park(s) not counted" % n)
        finally:
            if os.path.exists(log):
                os.unlink(log)
    if not notes and not problems:
        c.status, c.reason = "SKIP", "nothing applies (%s)" % it.kind
    elif problems:
        c.status, c.reason = "FAIL", "; ".join(problems)
    else:
        c.reason = "; ".join(notes)
    return c


def cmd_strict(args, lib, its, build_dir):
    return runner.execute(strict_cell, [(i, lib, build_dir) for i in its], args.jobs)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=("json", "syslog", "strict"))
    ap.add_argument("--lib", required=True)
    ap.add_argument("--scenario")
    ap.add_argument("--interp")
    ap.add_argument("--build-dir")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--show-aggregate", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    lib = os.path.abspath(args.lib)
    if not os.path.exists(lib):
        sys.exit("--lib %s does not exist" % lib)
    pfgrun.no_core()
    its = runner.select(interpreters.discover(), args.interp)
    build_dir = os.path.abspath(args.build_dir) if args.build_dir else build.default_build_dir()
    t0 = time.monotonic()
    cells = {"json": cmd_json, "syslog": cmd_syslog, "strict": cmd_strict}[args.what](args, lib, its, build_dir)
    if cells is None:
        return 77
    print(runner.summary("reports " + args.what, cells, t0))
    return runner.exit_status(cells, skipped=runner.SKIP_STATUS)


if __name__ == "__main__":
    sys.exit(main())
