"""Discover the Python interpreters and libpythons on this machine.

Every fact about an interpreter comes from the interpreter itself (sysconfig, and its own
/proc/self/maps to see whether the executable maps a libpython), run with a timeout, so a
broken or hanging interpreter becomes a skip reason instead of a stuck test run.

Three kinds of entries:
  * "shared-lib exe": an executable that maps libpython*.so (pyenv --enable-shared).
    Python programs run on it; embedding programs link against its libpython.
  * "static exe": an executable that defines the C API itself (Debian's /usr/bin/python3.X).
    Python programs and extensions only.
  * "embed-only": a libpython*.so with headers that no discovered executable maps
    (Debian's libpython3.11.so.1.0, used by embedders). Embedding programs only.

Interpreters of another architecture come from a sysroot (discover(sysroot=...), e.g. a
tools/debian-env arm64 sysroot): their programs start under a *runner prefix*
(`qemu-aarch64-static -L SYSROOT`, since this machine has no binfmt_misc), and every path
of such an Interpreter is a path on this machine (inside the sysroot), which qemu's -L
resolves as well. Their programs and modules are cross-compiled (pfgpy.build).

Usable with any Python 3.6+ (no dataclasses, no f-string '=' etc.).
"""
import glob
import json
import os
import shutil
import subprocess

try:
    from .env import scrubbed
except ImportError:         # run as a script: python3 tools/pfgpy/interpreters.py
    from env import scrubbed

MIN_VERSION = (3, 6)
HOST_ARCH = os.uname().machine
# How a sysroot's programs start here: (qemu-user binary, GNU triplet) per architecture.
FOREIGN = {"aarch64": ("qemu-aarch64-static", "aarch64-linux-gnu")}

# Run inside the candidate interpreter; prints one JSON object. Must stay compatible with
# 2.7 too, so that 2.7 is reported as "unsupported" rather than "broken".
_PROBE = r'''
import json, sys, sysconfig
cv = sysconfig.get_config_var
maps = []
try:
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 6 and "libpython" in parts[5]:
                maps.append(parts[5])
except Exception:
    pass
print(json.dumps({
    "version": list(sys.version_info[:3]),
    "executable": sys.executable,
    "include": sysconfig.get_paths().get("include"),
    "libdir": cv("LIBDIR"),
    "ldlibrary": cv("LDLIBRARY"),
    "instsoname": cv("INSTSONAME"),
    "enable_shared": cv("Py_ENABLE_SHARED"),
    "ext_suffix": cv("EXT_SUFFIX") or cv("SO"),
    "multiarch": cv("MULTIARCH"),
    "mapped_libpython": sorted(set(maps)),
}))
'''


class Interpreter(object):
    """One test target. `skip` is None when usable, else the reason it is not."""

    def __init__(self, name, kind, version=None, executable=None, include=None,
                 libdir=None, libpython=None, ext_suffix=None, skip=None, source=None,
                 runner=(), sysroot=None, arch=None):
        self.name = name
        self.kind = kind                # "shared-lib exe" | "static exe" | "embed-only"
        self.version = tuple(version) if version else None
        self.executable = executable    # None for embed-only
        self.include = include          # directory holding Python.h
        self.libdir = libdir
        self.libpython = libpython      # full path of the shared libpython, if any
        self.ext_suffix = ext_suffix
        self.skip = skip
        self.source = source            # "pyenv" | "system" | "sysroot"
        self.runner = list(runner)      # prefix of every command line, e.g. qemu-user
        self.sysroot = sysroot          # another architecture's sysroot, or None
        self.arch = arch or HOST_ARCH   # "x86_64", "aarch64": GNU triplet's first part

    @property
    def can_run_programs(self):
        return self.skip is None and self.executable is not None and self.kind != "embed-only"

    @property
    def can_embed(self):
        return self.skip is None and self.libpython is not None and \
            self.kind in ("shared-lib exe", "embed-only")

    @property
    def version_str(self):
        return ".".join(str(x) for x in self.version) if self.version else "?"

    def to_dict(self):
        d = dict(self.__dict__)
        d["version"] = list(self.version) if self.version else None
        return d

    def __repr__(self):
        return "Interpreter(%r, %s, %s%s)" % (self.name, self.kind, self.version_str,
                                             ", skip=%r" % self.skip if self.skip else "")


def probe(executable, timeout=20, runner=()):
    """Ask an interpreter about itself. Returns (facts dict, None) or (None, reason)."""
    try:
        out = subprocess.run(list(runner) + [executable, "-E", "-S", "-c", _PROBE], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, timeout=timeout, env=scrubbed())
    except subprocess.TimeoutExpired:
        return None, "probe timed out after %ss" % timeout
    except OSError as e:
        return None, "cannot run: %s" % e
    if out.returncode != 0:
        tail = out.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
        return None, "probe failed (status %d): %s" % (out.returncode, tail[0])
    try:
        return json.loads(out.stdout.decode().strip().splitlines()[-1]), None
    except (ValueError, IndexError):
        return None, "probe printed no JSON"


def _pyenv_root():
    roots = []
    if os.environ.get("PYENV_ROOT"):
        roots.append(os.environ["PYENV_ROOT"])
    pyenv = shutil.which("pyenv")
    if pyenv:
        try:
            r = subprocess.run([pyenv, "root"], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, timeout=10)
            if r.returncode == 0 and r.stdout.strip():
                roots.append(r.stdout.decode().strip())
        except (OSError, subprocess.TimeoutExpired):
            pass
    roots.append(os.path.expanduser("~/.pyenv"))
    seen, out = set(), []
    for r in roots:
        r = os.path.realpath(r)
        if r not in seen and os.path.isdir(os.path.join(r, "versions")):
            seen.add(r)
            out.append(r)
    return out


def _version_key(name):
    parts = []
    for p in name.replace("-", ".").split("."):
        parts.append(int(p) if p.isdigit() else -1)
    return parts


def _has_header(include):
    return bool(include) and os.path.isfile(os.path.join(include, "Python.h"))


def _from_facts(name, source, exe, facts):
    version = tuple(facts["version"])
    include = facts.get("include")
    mapped = facts.get("mapped_libpython") or []
    kind = "shared-lib exe" if mapped else "static exe"
    libpython = os.path.realpath(mapped[0]) if mapped else None
    libdir = os.path.dirname(libpython) if libpython else facts.get("libdir")
    it = Interpreter(name, kind, version, exe, include, libdir, libpython,
                     facts.get("ext_suffix"), source=source)
    if version < MIN_VERSION:
        it.skip = "<3.6 unsupported"
    elif not _has_header(include):
        it.skip = "no headers (Python.h not found in %s)" % include
    return it


def _system_libpythons(facts_by_exe):
    """Shared libpythons of system pythons that no executable maps, e.g. Debian's
    libpython3.11.so.1.0 beside a static /usr/bin/python3.11."""
    out = []
    for exe, facts in facts_by_exe:
        libdir, soname = facts.get("libdir"), facts.get("instsoname")
        if not libdir or not soname or not soname.startswith("libpython"):
            continue
        cands = [os.path.join(libdir, soname)]
        if facts.get("multiarch"):
            cands.append(os.path.join("/usr/lib", facts["multiarch"], soname))
        for c in cands:
            if os.path.isfile(c) and not facts.get("mapped_libpython"):
                out.append((exe, facts, os.path.realpath(c)))
                break
    return out


def _candidates():
    """(kind, name-or-path, executable or None) in discovery order, before probing."""
    out = []
    for root in _pyenv_root():
        vdir = os.path.join(root, "versions")
        for v in sorted(os.listdir(vdir), key=_version_key):
            prefix = os.path.join(vdir, v)
            if os.path.islink(prefix):      # virtualenv aliases point into another version
                continue
            exe = None
            for cand in ("python3", "python"):
                p = os.path.join(prefix, "bin", cand)
                if os.path.exists(p):
                    exe = os.path.realpath(p)
                    break
            out.append(("pyenv", v, exe))
    out.extend(_system_candidates())
    return out


def _os_release(path="/etc/os-release"):
    out = {}
    try:
        with open(path) as f:
            for line in f:
                if "=" in line:
                    k, v = line.rstrip("\n").split("=", 1)
                    out[k] = v.strip().strip('"')
    except OSError:
        pass
    return out


def _distro():
    """The label prefix of system interpreters: the os-release ID ("debian", "ubuntu"),
    with "-sid" on Debian unstable (tools/sid-env's chroot), whose python3.X are other
    builds than a stable release's and must not share its column names."""
    osr = _os_release()
    name = osr.get("ID") or "system"
    if name == "debian":
        try:
            with open("/etc/debian_version") as f:
                dv = f.read().strip()
        except OSError:
            dv = ""
        # Unstable says "<next codename>/sid" there and has no VERSION_ID.
        if dv.endswith("/sid") or ("VERSION_ID" not in osr and "sid" in osr.get("PRETTY_NAME", "")):
            name = "debian-sid"
    return name


def _system_candidates():
    """/usr/bin/python3.X and /usr/local/bin/python3.X executables (not -config scripts,
    not the debug or free-threaded variants' config). Debian unstable ships several
    minor versions side by side (python3.13, python3.14, python3.15)."""
    out = []
    for p in sorted(set(glob.glob("/usr/bin/python3.*") + glob.glob("/usr/local/bin/python3.*")),
                    key=lambda p: (os.path.dirname(p), _version_key(os.path.basename(p)[6:]))):
        base = os.path.basename(p)
        # python3.11 yes; python3.11-config, python3.11m-config, python3.11-dbg-config no.
        if base.endswith("-config") or not os.access(p, os.X_OK) or os.path.isdir(p):
            continue
        out.append(("system", p, os.path.realpath(p)))
    return out


def sysroot_arch(sysroot):
    """The architecture of a sysroot's /usr/bin/python3.X (its ELF e_machine)."""
    for p in sorted(glob.glob(os.path.join(sysroot, "usr", "bin", "python3.*"))):
        try:
            with open(os.path.realpath(p), "rb") as f:
                head = f.read(20)
        except OSError:
            continue
        if head[:4] == b"\x7fELF":
            return {183: "aarch64", 62: "x86_64"}.get(int.from_bytes(head[18:20], "little"))
    return None


def sysroot_runner(sysroot):
    """How this machine starts a sysroot's programs: (runner prefix, GNU triplet of its
    cross tools, None), the runner being [qemu-user, "-L", SYSROOT]; (None, triplet or
    None, reason) when it cannot."""
    arch = sysroot_arch(sysroot)
    if arch not in FOREIGN:
        return None, None, "no way to run %s programs here" % (arch or "unknown")
    qemu, triplet = FOREIGN[arch]
    found = shutil.which(qemu)
    if found is None:
        return None, triplet, "%s not found (Debian package qemu-user-static)" % qemu
    return [found, "-L", os.path.realpath(sysroot)], triplet, None


def discover_sysroot(sysroot, include_skipped=True, timeout=60):
    """The interpreters of another architecture's sysroot (/usr/bin/python3.X there, and
    the libpython3.X beside each), started under qemu-user. Names say the release and
    the architecture: "debian12-arm64-python3.11 (static exe)", "debian12-arm64-libpython3.11"."""
    sysroot = os.path.realpath(sysroot)
    arch = sysroot_arch(sysroot)
    osr = _os_release(os.path.join(sysroot, "etc", "os-release"))
    distro = "%s%s-%s" % (osr.get("ID", "sysroot"), osr.get("VERSION_ID", ""),
                          {"aarch64": "arm64"}.get(arch, arch or "unknown"))
    runner, _, why = sysroot_runner(sysroot)
    if arch not in FOREIGN:
        return [Interpreter(distro, "static exe", source="sysroot", sysroot=sysroot, skip=why)]
    have_runner = runner is not None
    runner = runner or [FOREIGN[arch][0], "-L", sysroot]
    found = []
    for p in sorted(glob.glob(os.path.join(sysroot, "usr", "bin", "python3.*")),
                    key=lambda p: _version_key(os.path.basename(p)[6:])):
        base = os.path.basename(p)
        if base.endswith("-config") or not os.access(p, os.X_OK) or os.path.isdir(p):
            continue
        exe = os.path.realpath(p)
        label = "%s-%s" % (distro, base)
        common = dict(source="sysroot", runner=runner, sysroot=sysroot, arch=arch)
        if not have_runner:
            found.append(Interpreter(label, "static exe", executable=exe, skip=why, **common))
            continue
        facts, err = probe(exe, timeout, runner)
        if facts is None:
            found.append(Interpreter(label, "static exe", executable=exe, skip=err, **common))
            continue
        # Paths the probe reports outside the sysroot (e.g. a target path such as
        # /usr/include/python3.X) are taken inside it.
        inc = facts.get("include")
        facts = dict(facts, include=(inc if not inc or inc.startswith(sysroot + "/")
                                     else sysroot + inc))
        mapped = [m if m.startswith(sysroot) else sysroot + m
                  for m in facts.get("mapped_libpython") or []]
        facts["mapped_libpython"] = mapped
        it = _from_facts(label, "sysroot", exe, facts)
        it.runner, it.sysroot, it.arch = runner, sysroot, arch
        it.name = "%s (%s)" % (label, "static exe" if it.kind == "static exe" else "shared exe")
        found.append(it)
        if mapped or not facts.get("instsoname"):
            continue
        libdir = facts.get("libdir") or "/usr/lib"
        libdir = libdir if libdir.startswith(sysroot + "/") else sysroot + libdir
        cands = [os.path.join(libdir, facts["instsoname"])]
        if facts.get("multiarch"):
            cands.append(sysroot + os.path.join("/usr/lib", facts["multiarch"],
                                                facts["instsoname"]))
        for c in cands:
            if os.path.isfile(c):
                lib = os.path.realpath(c)
                e = Interpreter("%s-lib%s" % (distro, base), "embed-only", tuple(facts["version"]),
                                exe, facts["include"], os.path.dirname(lib), lib,
                                facts.get("ext_suffix"), **common)
                if e.version < MIN_VERSION:
                    e.skip = "<3.6 unsupported"
                elif not _has_header(e.include):
                    e.skip = "no headers (Python.h not found in %s)" % e.include
                found.append(e)
                break
    if not found:
        found.append(Interpreter(distro, "static exe", source="sysroot", sysroot=sysroot,
                                 arch=arch, skip="no usr/bin/python3.X in %s" % sysroot))
    if not include_skipped:
        found = [i for i in found if i.skip is None]
    return found


def in_sysroot(sysroot, path, names=("usr/bin", "bin")):
    """The path on this machine of a sysroot's program or file, as its own processes name
    it: a path already inside the sysroot stays, another absolute path is taken inside it,
    a bare name is looked up in the sysroot's usr/bin and bin. None when it does not exist."""
    sysroot = os.path.realpath(sysroot)
    if os.sep not in path:
        cands = [os.path.join(sysroot, d, path) for d in names]
    elif os.path.realpath(path).startswith(sysroot + os.sep):
        cands = [path]
    else:
        cands = [sysroot + os.path.abspath(path)]
    for c in cands:
        if os.path.exists(c):
            return c
    return None


def sysroot_interpreter(sysroot, path, want="exe"):
    """The discovered sysroot Interpreter for a program (want "exe": its executable) or a
    libpython (want "lib": an embed-only entry), given as in_sysroot takes it; (None,
    reason) when there is none."""
    p = in_sysroot(sysroot, path)
    if p is None:
        return None, "%s: not found in the sysroot %s" % (path, sysroot)
    real = os.path.realpath(p)
    its = discover_sysroot(sysroot)
    for it in its:
        if want == "exe" and it.kind != "embed-only" and it.executable == real:
            return it, None
        if want == "lib" and it.kind == "embed-only" and it.libpython == real:
            return it, None
    known = ", ".join(i.executable if want == "exe" else (i.libpython or "?") for i in its
                      if (i.kind == "embed-only") == (want == "lib")) or "none"
    return None, "%s is not one of the sysroot's %s (%s)" % (
        p, "interpreters" if want == "exe" else "libpythons", known)


def discover(include_skipped=True, timeout=20, sysroot=None):
    """All interpreters and embedding targets, sorted: pyenv by version, then system.
    With sysroot: that sysroot's interpreters only (discover_sysroot)."""
    if sysroot:
        return discover_sysroot(sysroot, include_skipped)
    found = []
    seen_exe = set()
    cands = _candidates()
    # Probing starts an interpreter each (~0.1 s); do them all at once.
    import concurrent.futures
    exes = sorted(set(c[2] for c in cands if c[2]))
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as ex:
        probed = dict(zip(exes, ex.map(lambda e: probe(e, timeout), exes)))

    for src, v, exe in cands:
        if src != "pyenv":
            continue
        name = "pyenv-%s" % v
        if exe is None:
            found.append(Interpreter(name, "shared-lib exe", skip="no bin/python for %s" % v,
                                     source="pyenv"))
            continue
        seen_exe.add(exe)
        facts, err = probed[exe]
        if facts is None:
            found.append(Interpreter(name, "shared-lib exe", executable=exe, skip=err,
                                     source="pyenv"))
            continue
        found.append(_from_facts(name, "pyenv", exe, facts))

    sys_facts = []
    distro = _distro()
    for src, p, exe in cands:
        if src != "system" or exe in seen_exe:
            continue
        base = os.path.basename(p)
        seen_exe.add(exe)
        facts, err = probed[exe]
        # e.g. "debian-python3.11"; /usr/local builds are "local-python3.X".
        label = ("%s-%s" % (distro, base)) if p.startswith("/usr/bin/") else "local-%s" % base
        if facts is None:
            found.append(Interpreter(label, "static exe", executable=exe, skip=err, source="system"))
            continue
        it = _from_facts(label, "system", exe, facts)
        it.name = "%s (%s)" % (label, "static exe" if it.kind == "static exe" else "shared exe")
        found.append(it)
        sys_facts.append((exe, facts, label))

    for exe, facts, lib in _system_libpythons([(e, f) for e, f, _ in sys_facts]):
        label = [l for e, f, l in sys_facts if e == exe][0]
        # "debian-python3.11" -> "debian-libpython3.11", "debian-sid-python3.14" ->
        # "debian-sid-libpython3.14"
        head, _, base = label.rpartition("-")
        it = Interpreter("%s-lib%s" % (head, base), "embed-only",
                         tuple(facts["version"]), exe, facts.get("include"),
                         os.path.dirname(lib), lib, facts.get("ext_suffix"), source="system")
        if it.version < MIN_VERSION:
            it.skip = "<3.6 unsupported"
        elif not _has_header(it.include):
            it.skip = "no headers (Python.h not found in %s)" % it.include
        found.append(it)

    if not include_skipped:
        found = [i for i in found if i.skip is None]
    return found


def from_executable(executable, name=None, timeout=20):
    """An Interpreter for one executable given by path (not necessarily discovered)."""
    exe = os.path.realpath(executable)
    facts, err = probe(exe, timeout)
    name = name or exe
    if facts is None:
        return Interpreter(name, "static exe", executable=exe, skip=err, source="command line")
    return _from_facts(name, "command line", exe, facts)


def main(argv=None):
    import argparse
    ap = argparse.ArgumentParser(description="List the interpreters pyfinguard tests run on.")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--sysroot", help="another architecture's sysroot (run under qemu-user)")
    a = ap.parse_args(argv)
    its = discover(sysroot=a.sysroot)
    if a.json:
        print(json.dumps([i.to_dict() for i in its], indent=1))
        return 0
    for i in its:
        print("%-34s %-15s %-8s %s%s" % (i.name, i.kind, i.version_str,
                                        i.libpython or i.executable or "",
                                        ("  SKIP " + i.skip) if i.skip else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
