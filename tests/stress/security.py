#!/usr/bin/env python3
"""Security properties of the guard, tested without privilege escalation of the test itself.

    tests/stress/stress.py security

1. Secure execution (AT_SECURE): sec_helper.c, linked with a copy of the guard and with
   Debian's libpython3.11 (world-readable, unlike /root/.pyenv), is run as user nobody
   (setpriv) in four forms: a plain copy (control: AT_SECURE 0), setuid root, setgid
   root, and with a file capability (setcap cap_net_raw+ep). The environment asks for
   PYFINGUARD_MODE=abort and PYFINGUARD_LOG=<file>. Control: the process aborts and the
   log is written. Secure forms: AT_SECURE 1, the environment is ignored (the late thread
   is parked with the default mode, exit 7), no log file, no "pyfinguard:" line at all.
   Needs root (to chown/setcap the copies) and the nobody user; otherwise reported skipped.
2. PYFINGUARD_LOG is never opened through a symlink (O_NOFOLLOW): a symlink to a file and
   a dangling symlink; the target is neither written nor created, and the report goes to
   stderr with "(PYFINGUARD_LOG could not be opened)". A plain path is the control (file
   created, mode 0600, report in it).
3. The library never runs programs, and opens a socket only when asked to: its dynamic
   imports (nm -D) and those of the libraries it links contain no exec*, system, popen,
   posix_spawn, fork, bind, listen, accept, sendto, sendmsg, getaddrinfo; the guard's own
   socket imports are exactly socket, connect and send (PYFINGUARD_LOG=syslog), the
   linked libraries have none. Under strace -f a guarded run of the helper (parking
   included) with the default settings makes no such system call beyond what the same
   program makes without the guard; with PYFINGUARD_LOG=syslog it makes exactly one
   socket(AF_UNIX, SOCK_DGRAM), one connect to PYFINGUARD_SYSLOG_SOCKET (a datagram socket
   this test binds) and sends the report there, and nothing else of the kind.
"""
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

FORBIDDEN = re.compile(r"^(exec\w*|fexecve|system|popen|posix_spawn\w*|fork|vfork|clone|"
                       r"socket|socketpair|connect|bind|listen|accept4?|send|sendto|sendmsg|"
                       r"getaddrinfo|gethostbyname\w*)$")
# The PYFINGUARD_LOG=syslog destination (shim/sink.cc, syslog_fd): the guard's only
# socket calls, made only when that destination is selected (checked under strace).
GUARD_SOCKET_IMPORTS = {"socket", "connect", "send"}
TRACED = "execve,execveat,fork,vfork,socket,connect,bind,listen,sendto,sendmsg"

results = []


def check(name, ok, detail):
    results.append((name, "pass" if ok else "FAIL", detail))


def skip(name, why):
    results.append((name, "skipped", why))


def debian_libpython():
    usable, _ = common.pick_interpreters()
    for it in usable:
        if it.kind == "embed-only" and it.libpython and it.libpython.startswith("/usr/"):
            return it
    return None


def build_helper(d, lib, it):
    shutil.copy(lib, os.path.join(d, "libpyfinguard.so"))
    # The link records the SONAME (libpyfinguard.so.0): that is the name the loader looks for.
    soname = re.search(r"SONAME\s+(\S+)", subprocess.check_output(["objdump", "-p", lib]).decode())
    if soname:
        shutil.copy(lib, os.path.join(d, soname.group(1)))
    exe = os.path.join(d, "sec_helper")
    # The guard first: its definitions precede libpython's in the global lookup scope,
    # exactly as with LD_PRELOAD. Absolute RPATH: honoured in secure mode ($ORIGIN is not).
    # --no-as-needed: the C API names the guard defines are non-default symbol versions,
    # which the link editor does not bind to (docs/deployment.md), so with --as-needed
    # (the toolchain's default here) it would drop the guard as unused.
    subprocess.check_call(["cc", "-O1", "-g", "-pthread", "-I" + it.include,
                           os.path.join(common.HERE, "sec_helper.c"), "-o", exe,
                           "-Wl,--no-as-needed", os.path.join(d, "libpyfinguard.so"), "-Wl,--as-needed",
                           it.libpython,
                           "-Wl,--disable-new-dtags", "-Wl,-rpath," + d, "-ldl"])
    return exe


def run_as_nobody(exe, env):
    cmd = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", exe]
    return common.run(cmd, env, 60)


def secure_execution(lib, it, d):
    if os.geteuid() != 0:
        return skip("secure execution", "needs root to make setuid/setcap copies")
    if shutil.which("setpriv") is None:
        return skip("secure execution", "setpriv not found (util-linux)")
    exe = build_helper(d, lib, it)
    os.chmod(d, 0o755)
    logs = os.path.join(d, "logs")
    os.mkdir(logs)
    os.chmod(logs, 0o1777)
    forms = [("plain copy (control)", None)]
    for name, how in (("setuid root", 0o4755), ("setgid root", 0o2755), ("file capability", "cap")):
        forms.append((name, how))
    for name, how in forms:
        copy = os.path.join(d, "sec_helper_" + re.sub(r"\W+", "_", name))
        shutil.copy(exe, copy)
        os.chown(copy, 0, 0)
        if how == "cap":
            if shutil.which("setcap") is None:
                skip("secure execution: " + name, "setcap not found (libcap2-bin)")
                continue
            subprocess.check_call(["setcap", "cap_net_raw+ep", copy])
            os.chmod(copy, 0o755)
        else:
            os.chmod(copy, how or 0o755)
        log = os.path.join(logs, re.sub(r"\W+", "_", name) + ".log")
        env = common.clean_env({"PYFINGUARD_MODE": "abort", "PYFINGUARD_LOG": log,
                                "PYFINGUARD_QUIET": "0"})
        r = run_as_nobody(copy, env)
        m = re.search(r"^AT_SECURE (\d+) uid (\d+) euid (\d+)", r.stdout, re.M)
        secure = m and m.group(1) == "1"
        guard_lines = [l for l in r.stderr.splitlines() if l.startswith("pyfinguard")]
        wrote_log = os.path.exists(log)
        detail = "%s; AT_SECURE %s (uid %s euid %s); %s; log %s; %d pyfinguard line(s) on stderr" % (
            name, m.group(1) if m else "?", m.group(2) if m else "?", m.group(3) if m else "?",
            r.describe(), "written" if wrote_log else "absent", len(guard_lines))
        if how is None:
            ok = (not secure and r.status == -6 and wrote_log and re.search(r"(parked|ended) thread", open(log).read()) is not None)
            check("secure execution: control honours the environment", ok, detail)
        else:
            parked = re.search(r"^PARKED (\d+)", r.stdout, re.M)
            ok = (secure and r.status == 7 and parked and parked.group(1) == "1" and not wrote_log
                  and not guard_lines)
            check("secure execution: %s ignores PYFINGUARD_*, writes nothing" % name, ok, detail)


def symlinks(lib, it, d):
    exe = os.path.join(d, "sec_helper")
    if not os.path.exists(exe):
        exe = build_helper(d, lib, it)
    target = os.path.join(d, "target")
    with open(target, "w") as f:
        f.write("precious\n")
    link = os.path.join(d, "log-link")
    os.symlink(target, link)
    dangling_target = os.path.join(d, "created-through-link")
    dangling = os.path.join(d, "log-dangling")
    os.symlink(dangling_target, dangling)
    plain = os.path.join(d, "plain.log")
    for name, path in (("symlink to a file", link), ("dangling symlink", dangling), ("plain path", plain)):
        r = common.run([exe], common.clean_env({"PYFINGUARD_LOG": path}), 60)
        on_stderr = re.search(r"(parked|ended) thread", r.stderr) is not None
        said = "(PYFINGUARD_LOG could not be opened)" in r.stderr
        if path == plain:
            st = os.stat(plain) if os.path.exists(plain) else None
            ok = (r.status == 7 and st is not None and stat.S_IMODE(st.st_mode) == 0o600
                  and re.search(r"(parked|ended) thread", open(plain).read()) and not on_stderr)
            check("PYFINGUARD_LOG plain path (control)", ok,
                  "%s; file %s" % (r.describe(), "mode %o" % stat.S_IMODE(st.st_mode) if st else "absent"))
        elif path == link:
            untouched = open(target).read() == "precious\n"
            check("PYFINGUARD_LOG symlink not followed", r.status == 7 and untouched and on_stderr and said,
                  "%s; target %s; report on stderr: %s" % (r.describe(), "untouched" if untouched else "WRITTEN",
                                                          on_stderr))
        else:
            created = os.path.exists(dangling_target)
            check("PYFINGUARD_LOG dangling symlink not followed", r.status == 7 and not created and on_stderr,
                  "%s; target %s" % (r.describe(), "CREATED" if created else "not created"))


def loaded_later(name):
    """The path of a library the guard dlopens (libunwind, at take-over), with its own
    dependencies: they run in the guarded process as much as the linked ones."""
    out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    m = re.search(r"\s%s \(libc6,x86-64\) => (\S+)" % re.escape(name), out)
    if not m:
        return []
    deps = subprocess.check_output(["ldd", m.group(1)]).decode()
    return [m.group(1)] + re.findall(r"=> (/\S+)", deps)


def imports(lib):
    out = subprocess.check_output(["ldd", lib]).decode()
    libs = [lib] + re.findall(r"=> (/\S+)", out)
    libs += [l for l in loaded_later("libunwind.so.8") if l not in libs]
    bad, guard_sockets = [], set()
    for l in libs:
        syms = subprocess.check_output(["nm", "-D", "--undefined-only", l]).decode().split()
        names = [s.split("@")[0] for s in syms if s not in ("U", "w", "v")]
        hits = set(n for n in names if FORBIDDEN.match(n))
        if l == lib:
            guard_sockets = hits & GUARD_SOCKET_IMPORTS
            hits -= GUARD_SOCKET_IMPORTS
        if hits:
            bad.append("%s: %s" % (os.path.basename(l), ",".join(sorted(hits))))
    # Exactly the syslog destination's calls: more would be a new way out, fewer means
    # the list (and the strace check below) no longer describes the library.
    if guard_sockets != GUARD_SOCKET_IMPORTS:
        bad.append("guard's socket imports %s, expected exactly %s" % (
            ",".join(sorted(guard_sockets)) or "none", ",".join(sorted(GUARD_SOCKET_IMPORTS))))
    check("no exec/spawn/fork imports; sockets: the guard's socket,connect,send only "
          "(nm -D, guard + %d linked or dlopened libraries)" % (len(libs) - 1),
          not bad, "; ".join(bad) or ", ".join(os.path.basename(l) for l in libs))


def traced(lib, it, d):
    if shutil.which("strace") is None:
        return skip("strace", "strace not installed (apt-get install strace)")
    plain = os.path.join(d, "plain_helper")
    subprocess.check_call(["cc", "-O1", "-pthread", "-I" + it.include,
                           os.path.join(common.HERE, "sec_helper.c"), "-o", plain, it.libpython,
                           "-ldl"])
    counts, status = {}, {}
    for guard in (False, True):
        out = os.path.join(d, "strace.%d" % guard)
        env = common.guard_env(lib, guard)
        status[guard] = common.run(["strace", "-f", "-qq", "-o", out, "-e", "trace=" + TRACED, plain], env, 120)
        status[guard] = status[guard].describe()
        calls = re.findall(r"^\d+\s+(\w+)\(", open(out).read(), re.M)
        counts[guard] = {c: calls.count(c) for c in set(calls)}
    ok = status[True] == "exit 7" and counts[True] == counts[False] and counts[True].get("execve", 0) == 1 and \
        not any(k in counts[True] for k in ("socket", "connect", "bind", "fork", "vfork"))
    check("strace: no program run, no socket (guarded run parks a thread)", ok,
          "without guard: %s, %s; with guard: %s, %s" % (status[False], counts[False], status[True],
                                                         counts[True]))
    # Selected: PYFINGUARD_LOG=syslog to a datagram socket bound here.
    import socket
    sock_path = os.path.join(d, "syslog.sock")
    rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    rx.bind(sock_path)
    rx.settimeout(5)
    try:
        out = os.path.join(d, "strace.syslog")
        env = common.guard_env(lib, True)
        env.update(PYFINGUARD_LOG="syslog", PYFINGUARD_SYSLOG_SOCKET=sock_path)
        r = common.run(["strace", "-f", "-qq", "-s", "200", "-o", out, "-e", "trace=" + TRACED, plain],
                       env, 120)
        trace = open(out).read()
        calls = re.findall(r"^\d+\s+(\w+)\(", trace, re.M)
        c = {k: calls.count(k) for k in set(calls)}
        got = []
        try:
            while True:
                got.append(rx.recv(65536).decode(errors="replace"))
                rx.settimeout(0.5)
        except socket.timeout:
            pass
    finally:
        rx.close()
    sockets = re.findall(r"^\d+\s+socket\((.*?)\)\s+=", trace, re.M)
    connects = re.findall(r'^\d+\s+connect\(\d+, \{sa_family=AF_UNIX, sun_path="([^"]*)"\}', trace, re.M)
    ok = (r.describe() == "exit 7" and c.get("execve", 0) == 1 and c.get("socket") == 1 and
          c.get("connect") == 1 and sockets and sockets[0].startswith("AF_UNIX, SOCK_DGRAM") and
          connects == [sock_path] and c.get("sendto", 0) >= 1 and
          not any(k in c for k in ("bind", "listen", "fork", "vfork", "execveat", "sendmsg")) and
          len(got) >= 1 and all(g.startswith("<12>pyfinguard[") or g.startswith("<13>pyfinguard[") for g in got)
          and any(re.search(r"(parked|ended) thread", g) for g in got))
    check("strace: PYFINGUARD_LOG=syslog opens exactly one AF_UNIX datagram socket to its path", ok,
          "%s, %s; socket(%s); connect to %s; %d datagram(s) received: %s" % (
              r.describe(), c, sockets[0] if sockets else "-", connects, len(got),
              (got[0][:60] if got else "-")))


def main():
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lib")
    lib = common.find_library(ap.parse_args().lib)
    it = debian_libpython()
    d = tempfile.mkdtemp(prefix="pfg-sec-")
    os.chmod(d, 0o755)
    try:
        if it is None:
            skip("secure execution / symlinks / strace", "Debian's libpython3.11 not found")
        else:
            secure_execution(lib, it, d)
            symlinks(lib, it, d)
            traced(lib, it, d)
        imports(lib)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    print("library: %s" % lib)
    common.table(["check", "result", "observed"], results)
    failed = sum(1 for r in results if r[1] == "FAIL")
    passed = sum(1 for r in results if r[1] == "pass")
    return common.runner.finish((), passed, failed, ", %d skipped" % (len(results) - passed - failed))


if __name__ == "__main__":
    sys.exit(main())
