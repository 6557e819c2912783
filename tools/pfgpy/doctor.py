"""`pyfinguard doctor`: what covers each intercepted function in an interpreter (or a
libpython an embedder loads), and a live check of the guard there (pfgpy.live).
tools/pyfinguard finds the library and calls main().

With a sysroot (--sysroot, e.g. a tools/debian-env arm64 one), the interpreter or libpython
is the sysroot's, every program of the check is cross-built for its architecture
(pfgpy.build) and runs under its qemu-user runner (pfgpy.interpreters.discover_sysroot).
"""
import json
import os
import platform
import re
import shlex
import shutil
import sys

from . import build, interpreters, live, run

# Runs inside the examined interpreter under the guard: asks the guard what it covers there.
_DESCRIBE = r'''
import ctypes, json, sys
out = {"version": ".".join(str(x) for x in sys.version_info[:3]),
       "executable": sys.executable}
try:
    f = ctypes.CDLL(None).pyfinguard_describe
except (OSError, AttributeError) as e:
    out["error"] = "pyfinguard_describe not found in the process: %s" % e
else:
    f.restype = ctypes.c_int
    f.argtypes = [ctypes.c_char_p, ctypes.c_ulong]
    size = 1 << 16
    while True:
        buf = ctypes.create_string_buffer(size)
        n = f(buf, size)
        if n < size:
            break
        size = n + 1
    out["describe"] = buf.value.decode("utf-8", "replace")
sys.stdout.write("PFG-DOCTOR " + json.dumps(out) + "\n")
'''


def interpreter_for(python):
    """An interpreters.Interpreter for an executable given on the command line."""
    exe = shutil.which(python) if os.sep not in python else python
    if not exe:
        return None, "%s: not found" % python
    facts, err = interpreters.probe(exe)
    if facts is None:
        return None, "%s: %s" % (exe, err)
    real = os.path.realpath(facts["executable"] or exe)
    # Reuse discover()'s classification (static exe / shared-lib exe, headers, skip).
    it = interpreters._from_facts(real, "command line", real, facts)
    return it, None


# Architectures whose builds have an entry patcher (shim/patch/meson.build); elsewhere only
# interposition covers callers (patch/none.cc).
PATCHED_ARCHS = ("x86_64", "amd64", "aarch64", "arm64")


def runner_of(it):
    """(command prefix, extra environment) of a run on `it`: none for this machine's
    interpreters; qemu-user for a sysroot's, with PATH=/usr/bin:/bin because an embedded
    libpython looks for "python3" on PATH to find its prefix (pfgpy.scenario.prepare says
    why that finds the sysroot's)."""
    prefix = list(getattr(it, "runner", None) or [])
    return prefix, ([("PATH", "/usr/bin:/bin")] if prefix else [])


def describe_quietly(argv, lib, timeout=60, extra=()):
    """Run argv under the guard without its exit summary: a pfgpy.run.Result; OSError
    when it cannot be started."""
    return run.run(argv, live.clean_env(lib, [("PYFINGUARD_QUIET", "1")] + list(extra)),
                   timeout)


def describe_under_guard(python, lib, timeout=60, prefix=()):
    try:
        r = describe_quietly(list(prefix) + [python, "-E", "-c", _DESCRIBE], lib, timeout)
    except OSError as e:
        return None, str(e), ""
    if r.timed_out:
        return None, "timed out after %d s" % timeout, ""
    for line in r.stdout.splitlines():
        if line.startswith("PFG-DOCTOR "):
            return json.loads(line[len("PFG-DOCTOR "):]), None, r.stderr
    status = ("killed by " + r.signal) if r.signal else "exit %d" % r.status
    return None, "%s printed no report (%s): %s" % (python, status, r.stderr.strip()[-400:]), \
        r.stderr


def parse_describe(text):
    """(key/value dict, [(function, mechanism, reason)]) from pyfinguard_describe()."""
    info, cover = {}, []
    for line in text.splitlines():
        if line.startswith("cover "):
            parts = line.split(None, 3)
            if len(parts) >= 3:
                cover.append((parts[1], parts[2], parts[3] if len(parts) > 3 else ""))
        elif ": " in line:
            k, v = line.split(": ", 1)
            info[k.strip()] = v.strip()
    return info, cover


COVERED = ("interpose", "entry-patch", "absent")
CORE_FUNCTIONS = ("PyEval_SaveThread", "PyEval_RestoreThread", "PyGILState_Ensure",
                  "Py_FinalizeEx")


def coverage_problems(info, cover, python_version=None):
    """(problems, lacking): what keeps a description's coverage from being complete (no
    problems: complete), and which of CORE_FUNCTIONS -- every CPython 3.6+ defines them:
    without a runtime the guard reports none -- nothing covers. python_version: the
    examined python's own "3.X.Y"; without it the description's runtime line is read."""
    problems = []
    if python_version is not None:
        if tuple(int(x) for x in python_version.split(".")) < (3, 6):
            problems.append("Python %s is not supported (pyfinguard guards CPython 3.6+)"
                            % python_version)
    else:
        m = re.match(r"CPython (\d+)\.(\d+)", info.get("runtime", ""))
        if m and (int(m.group(1)), int(m.group(2))) < (3, 6):
            problems.append("CPython %s.%s is not supported (3.6+)" % m.groups())
    reported = dict((fn, mech) for fn, mech, _ in cover)
    lacking = [fn for fn in CORE_FUNCTIONS if reported.get(fn) in (None, "absent")]
    if not cover:
        problems.append("the guard reported no coverage lines")
    elif lacking:
        problems.append("no Python runtime covered (nothing reported for %s)" % ", ".join(lacking))
    missing = [fn for fn, mech, _ in cover if mech not in COVERED]
    if missing:
        problems.append("not covered: " + ", ".join(missing))
    return problems, lacking


# The two ways an embedding host loads a libpython, as doctor --libpython checks them.
HOST_MODES = (
    ("linked", "a host linked to it (DT_NEEDED), calling it through its PLT"),
    ("dlopen", "a host that dlopens it, calls dlsym'd addresses, and unloads and loads it "
               "again once first (Apache mod_wsgi, plpython3u, uWSGI)"),
)
HOST_STATES = re.compile(r"^STATE (native|daemon) (\S+)", re.M)


def doctor_libpython(args, lib, out, sysroot=None):
    """doctor --libpython PATH: coverage and a live check through a small embedder
    (pfgpy/c/doctor_host.c), for each way of loading it. Says what it checked. With
    sysroot: PATH is the sysroot's (as its programs name it), the embedder cross-built."""
    target = None
    if sysroot:
        t = interpreters.FOREIGN.get(interpreters.sysroot_arch(sysroot), ("", "none"))[1]
        path = interpreters.in_sysroot(sysroot, args.libpython,
                                       ("usr/lib/" + t, "usr/lib", "lib/" + t))
        if path is None:
            return live.die(live.EXIT_CANNOT_CHECK, "%s: no such file in the sysroot %s"
                            % (args.libpython, sysroot))
        # Any usable interpreter of the sysroot gives the toolchain and the runner; the
        # libpython's own entry when discovery lists it.
        its = [i for i in interpreters.discover_sysroot(sysroot) if not i.skip]
        if not its:
            return live.die(live.EXIT_CANNOT_CHECK, "no usable interpreter in the sysroot %s"
                            % sysroot)
        real = os.path.realpath(path)
        target = ([i for i in its if i.libpython == real] + its)[0]
    path = os.path.abspath(path if sysroot else args.libpython)
    if not os.path.isfile(path):
        return live.die(live.EXIT_CANNOT_CHECK, "%s: no such file" % args.libpython)
    prefix, run_extra = runner_of(target)
    src = build.source("doctor_host.c")
    real = os.path.realpath(path)
    out.write("  libpython    %s%s\n" % (path, "" if real == path else " (%s)" % real))
    problems, notes = [], []
    for mode, what in HOST_MODES:
        out.write("host: %s\n" % what)
        try:
            if mode == "linked":
                exe = build.build_host([src], name="doctor_host_linked", extra_ldflags=[
                    "-Wl,--no-as-needed", real, "-Wl,--disable-new-dtags",
                    "-Wl,-rpath," + os.path.dirname(real)], interp=target)
            else:
                exe = build.build_host([src], interp=target)
        except (build.BuildError, build.Unsupported, OSError) as e:
            problems.append("%s host could not be built: %s" % (mode, str(e).strip()[:200]))
            out.write("  not checked: the embedder could not be built\n")
            continue
        try:
            r = describe_quietly(prefix + [exe, mode, path, "describe"], lib, extra=run_extra)
        except OSError as e:
            problems.append("%s host: %s" % (mode, e))
            continue
        if r.timed_out:
            problems.append("%s host: timed out after 60 s" % mode)
            continue
        text = r.stdout
        if r.status != 0:
            problems.append("%s host: the guard is not active or %s could not be loaded (%s)"
                            % (mode, path, (text + r.stderr).strip()[-200:]))
            out.write("  not checked: %s\n" % problems[-1])
            continue
        info, cover = parse_describe(text)
        for k in ("runtime", "image", "mapping", "build", "patching"):
            if k in info:
                out.write("  %-12s %s\n" % (k, info[k]))
        for fn, mech, why in cover:
            if not fn.startswith(("pthread_", "dl")):
                out.write("  %-26s %-12s %s\n" % (fn, mech, why))
        p, _ = coverage_problems(info, cover)
        out.write("  coverage:    %s\n" % ("complete" if not p else "INCOMPLETE (%s)" % "; ".join(p)))
        problems += ["%s host: %s" % (mode, x) for x in p]
        if args.no_live or p:
            out.write("  live check:  skipped (%s)\n" % ("--no-live" if args.no_live else
                                                         "coverage incomplete"))
            continue
        argv = prefix + [exe, mode, path, "live"] + (["1"] if mode == "dlopen" else [])
        out.write("  live check:  a daemon thread in os.read woken after Py_FinalizeEx, and a "
                  "native thread's first PyGILState_Ensure after it\n")
        out.write("  command      %s\n" % " ".join(shlex.quote(a) for a in argv))
        res = {}
        for label, with_lib in (("without guard", None), ("with guard", lib)):
            o = live.run(argv, with_lib, run_extra, timeout=60)
            res[label] = o
            states = dict(HOST_STATES.findall(o.stdout))
            extra = ", ".join("%s %s" % kv for kv in sorted(states.items()))
            out.write("  %-13s %s%s\n" % (label, o.text(), (" (" + extra + ")") if extra else ""))
        o = res["with guard"]
        states = dict(HOST_STATES.findall(o.stdout))
        reloads = re.findall(r"^RELOAD \d+ (\S+)", o.stdout, re.M)
        if mode == "dlopen" and reloads:
            if "unmapped" in reloads:
                out.write("  reload       %s was unmapped by dlclose and mapped again before "
                          "the check: the guard followed it\n" % os.path.basename(path))
            else:
                notes.append("%s stayed mapped after dlclose here, so following it across "
                             "an unload was not exercised" % os.path.basename(path))
        if o.status == live.EMBED_STATUS and not o.timed_out and o.stopped >= 2 and \
                states.get("native") in STOPPED and states.get("daemon") in STOPPED:
            continue
        problems.append("%s host live check failed: with the guard %s (%s)" % (
            mode, o.text(), ", ".join("%s %s" % kv for kv in sorted(states.items())) or
            "no thread states"))
    out.write("not checked: loads with dlmopen or RTLD_DEEPBIND; other late threads than the "
              "two kinds above; this host's own code (run it with --log stderr to see what "
              "the guard parks)\n")
    for n in notes:
        out.write("note: %s\n" % n)
    if problems:
        out.write("result: FAIL: %s\n" % "; ".join(problems))
        return live.EXIT_FAIL
    out.write("result: OK: coverage complete for both ways of loading checked%s\n" %
              ("" if args.no_live else ", live checks passed"))
    return live.EXIT_OK


def main(args, lib, version, out=sys.stdout):
    """`pyfinguard doctor` with the library `lib` (the launcher found it)."""
    python = args.python or "python3"
    sysroot = getattr(args, "sysroot", None)
    arch = platform.machine()
    out.write("pyfinguard doctor %s\n" % version)
    out.write("  library      %s\n" % lib)
    if sysroot:
        out.write("  sysroot      %s (its programs run under qemu-user)\n" % sysroot)
    if args.libpython:
        if args.python:
            return live.die(live.EXIT_USAGE, "doctor: give PYTHON or --libpython, not both")
        return doctor_libpython(args, lib, out, sysroot)
    target = None
    if sysroot:
        target, err = interpreters.sysroot_interpreter(sysroot, python)
        if target is None or target.skip:
            return live.die(live.EXIT_CANNOT_CHECK, "cannot examine %s: %s" % (
                python, err or target.skip))
        python, arch = target.executable, target.arch
    prefix, _ = runner_of(target)
    rep, err, stderr = describe_under_guard(python, lib, prefix=prefix)
    if rep is None:
        return live.die(live.EXIT_CANNOT_CHECK, "cannot examine %s: %s" % (python, err))
    out.write("  python       %s (%s)\n" % (rep["version"], rep["executable"]))
    warnings = [l for l in stderr.splitlines() if l.startswith("pyfinguard: warning:")]
    for w in warnings:
        out.write("  %s\n" % w)
    if "error" in rep:
        out.write("result: the guard is not active in %s: %s\n" % (python, rep["error"]))
        return live.EXIT_FAIL
    info, cover = parse_describe(rep["describe"])
    for k in ("version", "runtime", "image", "mapping", "build", "patching", "loads",
              "last unmapped", "generation", "phase"):
        if k in info:
            out.write("  %-12s %s\n" % (k, info[k]))
    if arch not in PATCHED_ARCHS:
        out.write("  note         entry patching is unsupported on %s: only interposition "
                  "covers callers here\n" % arch)
    out.write("coverage:\n")
    for fn, mech, why in cover:
        out.write("  %-26s %-12s %s\n" % (fn, mech, why))
    problems, lacking = coverage_problems(info, cover, rep["version"])
    pyver = tuple(int(x) for x in rep["version"].split("."))
    # "complete" is about the exported entries: every caller that reaches one. CPython's
    # own calls that link-time optimization inlined never do; the daemon live check below
    # finds out for the restore path (docs/design.md, "Where each function is covered").
    out.write("coverage: %s\n" % ("complete for every caller of the exported entries" if not problems
                                  else "INCOMPLETE (%s)" % "; ".join(problems)))
    out.flush()

    internal = None
    runtime_ok = pyver >= (3, 6) and not lacking and bool(cover)
    if args.no_live or not runtime_ok:
        out.write("live check: skipped (%s)\n" % ("--no-live" if args.no_live else
                                                  "no supported runtime under the guard"))
        live_ok = None
    else:
        live_ok, reason, internal = live_check(python, lib, out, target)
        if live_ok is None:
            problems.append("live check could not run: " + reason)
        elif not live_ok:
            problems.append("live check failed: " + reason)
    if problems:
        out.write("result: FAIL: %s\n" % "; ".join(problems))
        if live_ok is None and len(problems) == 1 and problems[0].startswith("live"):
            return live.EXIT_CANNOT_CHECK
        return live.EXIT_FAIL
    out.write("result: OK: complete coverage of the exported entries%s%s\n" %
              ("; CPython's internal restore: " + internal if internal else "",
               "" if args.no_live else "; live checks passed"))
    return live.EXIT_OK


def live_check(python, lib, out, it=None):
    """(True|False|None, reason, internal): None when the check could not run at all;
    internal: what the daemon check found about CPython's own restore path, or None.
    it: the interpreter when known (a sysroot's), else found from python."""
    if it is None:
        it, err = interpreter_for(python)
        if it is None:
            return None, err, None
    prefix, _ = runner_of(it)
    try:
        moddir = build.build_pfgtest(it)
    except (build.Unsupported, build.BuildError, OSError) as e:
        return None, "cannot build pfgtest for %s: %s" % (it.executable, str(e).strip()[:300]), None
    out.write("live check (%s):\n" % live.LIVE_SCENARIO)
    argv, extra = prefix + [it.executable, "-c", live.LIVE_CODE], [("PYTHONPATH", moddir)]
    out.write("  command        %s\n" % " ".join(shlex.quote(a) for a in argv))
    without = live.run(argv, None, extra)
    out.write("  without guard  %s%s\n" % (without.text(), "" if without.crashed or
                                          without.timed_out else
                                          " (the bug did not reproduce here)"))
    with_ = live.run(argv, lib, extra)
    out.write("  with guard     %s\n" % with_.text())
    tail = " ".join(with_.stderr.strip().splitlines()[-3:])
    if not with_.clean:
        return False, "with the guard: %s%s" % (with_.text(), (": " + tail) if tail else ""), None
    if with_.stopped < 1:
        return False, "exited 0 but the guard reported no parked or ended thread", None
    return daemon_check(it.executable, moddir, lib, out, prefix)


# A daemon thread in os.read, woken after Py_FinalizeEx by pfgtest's libc atexit handler:
# its way back is CPython's own Py_END_ALLOW_THREADS, which in a link-time optimized
# static python may not pass the exported (patched) entry of PyEval_RestoreThread.
DAEMON_SCENARIO = "a daemon thread in os.read woken after Py_FinalizeEx"
DAEMON_CODE = ("import os, sys, threading, pfgtest\n"
               "r, w = os.pipe(); pfgtest.wake_fd_at_exit(w)\n"
               "def reader():\n"
               "    pfgtest.register_thread('reader'); os.read(r, 1)\n"
               "    os.write(1, b'reader: PASSED os.read returned after finalization\\n')\n"
               "threading.Thread(target=reader, daemon=True).start()\n"
               "sys.exit(0 if pfgtest.wait_blocked(1, 5.0) else 92)\n")
# A host thread's STATE (scen.h) when the guard stopped it: parked, or gone (ended with
# pthread_exit as this CPython ends late threads: docs/design.md, "Ending or parking").
STOPPED = ("parked", "gone")

# Which path caught the thread, by the API its report names.
CAUGHT_BY = {
    "PyEval_RestoreThread": "CPython's own restore passed the guarded PyEval_RestoreThread",
    "pthread_exit": "CPython's own restore does not pass the guarded entry here; CPython "
                    "terminated the thread in take_gil and the guard ended it as CPython does "
                    "(or parked it where the unwind would abort)",
    "pause": "CPython's own restore does not pass the guarded entry here (link-time "
             "optimized); CPython hung the thread itself (PyThread_hang_thread) and the "
             "guard adopted it",
    "pthread_cond_timedwait": "the thread was waiting for the GIL inside take_gil when the "
                              "runtime went past its point of no return",
}


# What the API that caught the daemon thread says about CPython's own restore path.
INTERNAL_RESTORE = {
    "PyEval_RestoreThread": "reaches the guarded entry",
    "pthread_exit": "does not reach the guarded entry; CPython terminates such a thread in "
                    "take_gil, where the guard sees it",
    "pause": "does not reach the guarded entry (link-time optimized); CPython hangs such a "
             "thread itself (PyThread_hang_thread), where the guard adopts it",
    "pthread_cond_timedwait": "not determined (the thread was already waiting in take_gil, "
                              "where the guard stopped it)",
}


def daemon_check(python, moddir, lib, out, prefix=()):
    out.write("live check (%s):\n" % DAEMON_SCENARIO)
    argv = list(prefix) + [python, "-c", DAEMON_CODE]
    extra = [("PYTHONPATH", moddir)]
    without = live.run(argv, None, extra)
    out.write("  without guard  %s%s\n" % (without.text(), ", the thread ran Python after finalization"
                                          if "PASSED" in without.stdout else ""))
    with_ = live.run(argv, lib, extra)
    out.write("  with guard     %s\n" % with_.text())
    for api in with_.parked_in:
        out.write("  caught in      %s: %s\n" % (api, CAUGHT_BY.get(api, "")))
    internal = None
    if with_.parked_in:
        api = with_.parked_in[0]
        internal = INTERNAL_RESTORE.get(api, "caught in %s" % api)
        out.write("internal path (CPython's own Py_END_ALLOW_THREADS -> PyEval_RestoreThread):\n"
                  "  %s\n" % internal)
    if not with_.clean:
        return False, "daemon thread: with the guard %s" % with_.text(), internal
    if "PASSED" in with_.stdout:
        return False, "daemon thread: it ran Python after finalization with the guard", internal
    if with_.stopped < 1:
        return False, "daemon thread: exited 0 but the guard reported no parked or ended thread", internal
    return True, "", internal
