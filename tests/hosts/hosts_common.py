"""Helpers shared by the host tests (tests/hosts/test_*.py): real programs from Debian
packages that embed Debian's libpython3.11, run on 127.0.0.1 without and with the guard.

The guard is the library of the Meson build that runs the tests (PYFINGUARD_LIBRARY);
run by hand, <repo>/build/shim/libpyfinguard.so. A test never installs anything: when its
Debian package is missing it prints "SKIP: ..." and exits 77 (meson's "skipped"); tools/setup
installs the packages (test_packages there).

Every process a test starts runs in a session of its own; cleanup kills exactly those
sessions (by session id, found in /proc), whatever happens.
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.environ.get("PYFINGUARD_SOURCE_ROOT") or os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "deploy"))
import deploy_common as dc  # noqa: E402  (the library, the skip status, a free port)

SKIP = dc.SKIP
free_port = dc.free_port

sys.path.insert(0, os.path.join(REPO, "tools"))
from pfgpy import env as scrub  # noqa: E402
from pfgpy.run import no_core  # noqa: E402  (crashes are expected without the guard)

# Lines that mean a process crashed or was killed (Apache's error log, uwsgi's log, a
# shell's report, CPython's fatal error, C++'s std::terminate).
CRASH_PATTERNS = ("Segmentation fault", "exit signal", "Fatal Python error",
                  "terminate called", "Aborted", "killed by signal", "core dumped")


def library():
    return os.path.realpath(dc.library())


def skip(why):
    print("SKIP: %s" % why)
    sys.stdout.flush()
    raise SystemExit(SKIP)


def need_files(package, *paths):
    """Skip unless every path exists (they come from Debian package `package`)."""
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        skip("Debian package %s not installed (%s missing); tools/setup installs it as root"
             % (package, ", ".join(missing)))


def host_env(guard, **kw):
    """os.environ without any guard settings inherited from the caller; with guard=True
    LD_PRELOAD names the guard (and nothing else), PYFINGUARD_QUIET is not set."""
    # Nor what meson test adds for its own tests (MALLOC_PERTURB_, LD_LIBRARY_PATH).
    env = scrub.scrubbed(drop=("PYTHONDONTWRITEBYTECODE", "MALLOC_PERTURB_", "LD_LIBRARY_PATH"))
    if guard:
        env["LD_PRELOAD"] = library()
        # Diagnostics only: e.g. PFG_HOSTS_EXTRA_PRELOAD=/lib/x86_64-linux-gnu/libpython3.11.so.1.0
        # keeps libpython mapped across a host's dlclose/dlopen of the module embedding it.
        extra = os.environ.get("PFG_HOSTS_EXTRA_PRELOAD")
        if extra:
            env["LD_PRELOAD"] += ":" + extra
        # Diagnostics only: PFG_HOSTS_GUARD_LOG=1 has the guard report every parked
        # thread on stderr (Apache's error log, uWSGI's log), routine parks included.
        if os.environ.get("PFG_HOSTS_GUARD_LOG") == "1":
            env["PYFINGUARD_LOG"] = "stderr"
    env.update({k: v for k, v in kw.items() if v is not None})
    return env


def package_versions(*packages):
    """'pkg version, ...' from dpkg (for the header line of a test)."""
    out = []
    for p in packages:
        try:
            v = subprocess.run(["dpkg-query", "-W", "-f=${Version}", p],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               timeout=20).stdout.decode().strip()
        except (OSError, subprocess.SubprocessError):
            v = ""
        out.append("%s %s" % (p, v or "?"))
    return ", ".join(out)



def wait_port(port, deadline):
    """True once something accepts on 127.0.0.1:port (before time.monotonic() deadline)."""
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def http_get(port, path="/", timeout=10.0):
    """(status, body) of one GET with Connection: close; (None, error text) on failure."""
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path, headers={"Connection": "close"})
        r = c.getresponse()
        return r.status, r.read().decode("utf-8", "replace")
    except (OSError, http.client.HTTPException) as e:
        return None, "%s: %s" % (type(e).__name__, e)
    finally:
        c.close()


def crash_lines(text):
    return [l for l in text.splitlines() if any(p in l for p in CRASH_PATTERNS)]


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def session_pids(sid):
    """Pids of the live processes in session sid (zombies excluded)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
        except OSError:
            continue
        fields = st[st.rindex(")") + 2:].split()
        # fields[0] is the state, fields[3] the session id
        if fields[0] != "Z" and int(fields[3]) == sid:
            out.append(int(d))
    return out


def sessions_of_cmdline(needle):
    """Session ids of the live processes whose command line contains needle (a path unique
    to this test run, e.g. its temporary directory)."""
    out = set()
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                if needle.encode() not in f.read():
                    continue
            out.add(os.getsid(int(d)))
        except OSError:
            continue
    return out


def mapped(pid, needle):
    """True if a file whose path contains needle is mapped in process pid."""
    try:
        with open("/proc/%d/maps" % pid) as f:
            return any(needle in l for l in f)
    except OSError:
        return False


def guard_mapping(pids):
    """(processes, of which map the guard, of which map libpython3.11)."""
    lib = library()
    return (len(pids), sum(mapped(p, lib) for p in pids),
            sum(mapped(p, "libpython3.11") for p in pids))


def kill_session(sid):
    """SIGKILL every process of session sid (one this test created with setsid)."""
    for _ in range(50):
        pids = session_pids(sid)
        if not pids:
            return
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.05)


class Sessions(object):
    """A temporary directory and the sessions started in it; cleanup() kills them all and
    removes the directory."""

    def __init__(self, prefix, mode=0o755):
        self.tmp = tempfile.mkdtemp(prefix=prefix)
        os.chmod(self.tmp, mode)
        self.sessions = set()

    def popen(self, argv, env, log=None, **kw):
        """Start argv in a new session; stdout and stderr to log (a path) or pipes."""
        if log is not None:
            f = open(log, "ab")
            kw.update(stdout=f, stderr=subprocess.STDOUT)
        p = subprocess.Popen(argv, env=env, start_new_session=True, preexec_fn=no_core, **kw)
        if log is not None:
            f.close()
        self.sessions.add(p.pid)
        return p

    def adopt(self, sid):
        self.sessions.add(sid)

    def cleanup(self, keep=False):
        own = os.getsid(0)
        for sid in self.sessions:
            if sid != own and sid > 1:
                kill_session(sid)
        if not keep:
            shutil.rmtree(self.tmp, ignore_errors=True)


def on_signals_raise():
    """meson test ends a test that times out with SIGTERM: turn it into an exception so
    that finally clauses still kill the hosts (they run in sessions of their own)."""
    def interrupted(sig, frame):
        raise SystemExit("interrupted by %s" % signal.Signals(sig).name)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, interrupted)


class Checks(object):
    """Collects failed assertions so that one run reports all of them."""

    def __init__(self):
        self.failed = []

    def check(self, ok, what):
        print("  %s %s" % ("ok  " if ok else "FAIL", what))
        sys.stdout.flush()
        if not ok:
            self.failed.append(what)
        return ok

    def finish(self, name):
        if self.failed:
            print("%s: %d check(s) failed:" % (name, len(self.failed)))
            for f in self.failed:
                print("  - " + f)
            return 1
        print("%s: all checks passed" % name)
        return 0


def debian_module(name):
    """(PYTHONPATH entry holding the test extension `name` -- "pfgtest"
    (tools/pfgpy/c/pfgtest.c) or "pfgbind" (pfgbind.cc, pybind11) -- built for Debian's
    Python 3.11, the ABI the hosts embed, None) or (None, the reason it cannot be built)."""
    try:
        from pfgpy import build, interpreters
        for i in interpreters.discover():
            if i.skip is None and i.kind == "static exe" and \
                    i.executable.startswith("/usr/bin/python3.11"):
                return getattr(build, "build_" + name)(i), None
        return None, "Debian's /usr/bin/python3.11 not found"
    except Exception as e:  # BuildError, Unsupported: a reason to skip that case
        return None, "cannot build %s for Debian's python3.11 (%s): %s" % (
            name, "python3-pybind11, python3.11-dev" if name == "pfgbind" else "python3.11-dev",
            (str(e).splitlines() or ["?"])[-1])
