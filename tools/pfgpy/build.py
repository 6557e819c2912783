"""Compile embedding programs and extension modules for one discovered interpreter.

Results are cached under a build directory, keyed by a hash of the sources (plus every
header beside them), the interpreter and the command line, so a test matrix compiles each
program once per interpreter and a later run reuses it. Outputs are written to a temporary
name and renamed into place, so parallel builders (meson tests, matrix jobs) never see a
half-written file.

    from pfgpy import interpreters, build
    it = [i for i in interpreters.discover() if i.name == "pyenv-3.11.7"][0]
    exe = build.build_embed(it, ["tests/scenarios/seed.c"])   # a path of the caller's
    moddir = build.build_pfgtest(it)          # PYTHONPATH entry holding pfgtest
"""
import glob
import hashlib
import os
import shlex
import shutil
import subprocess
import tempfile
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
# The programs the launcher's doctor and demo build (pfgpy/c: installed with pfgpy):
# scen.h, the pfgtest extension, late_ensure.c, doctor_host.c. The tests' own programs
# (tests/scenarios) are found through the folders the tests add (add_source_dir): pfgpy
# is installed without tests/ and reads nothing of it.
PROGRAMS = os.path.join(HERE, "c")
INCLUDES = (PROGRAMS,)
SOURCE_DIRS = [PROGRAMS]


def add_source_dir(path):
    """Look for program sources by name (source()) in path before pfgpy/c."""
    path = os.path.abspath(path)
    if path not in SOURCE_DIRS:
        SOURCE_DIRS.insert(0, path)


def source(name):
    """The path of a program's source: the first folder of SOURCE_DIRS that has it."""
    for d in SOURCE_DIRS:
        p = os.path.join(d, name)
        if os.path.exists(p):
            return p
    return os.path.join(PROGRAMS, name)

CC = os.environ.get("CC", "cc")
CXX = os.environ.get("CXX", "c++")
# Another architecture's interpreter (a sysroot's, pfgpy.interpreters.discover_sysroot):
# Debian's cross compilers for its GNU triplet, with that sysroot's headers and libraries.
CROSS_TRIPLET = {"aarch64": "aarch64-linux-gnu"}


def toolchain(interp=None):
    """(C compiler, C++ compiler, extra flags) that build for interp's architecture."""
    if interp is None or not getattr(interp, "sysroot", None):
        return CC, CXX, []
    t = CROSS_TRIPLET.get(interp.arch)
    if t is None:
        raise Unsupported("no cross compiler known for %s" % interp.arch)
    if not shutil.which(t + "-gcc"):
        raise Unsupported("%s-gcc not found (Debian packages gcc-%s, g++-%s)" % (t, t, t))
    # The sysroot's libraries before the cross toolchain's own (Debian 12's glibc): a newer
    # sysroot's libpython needs its glibc's symbol versions (Debian 13: GLIBC_2.38).
    libs = [interp.sysroot + d + "/" + t for d in ("/usr/lib", "/lib")]
    return t + "-gcc", t + "-g++", ["--sysroot=" + interp.sysroot] + \
        ["-L" + d for d in libs] + ["-Wl,-rpath-link," + ":".join(libs)]
# Frame pointers and symbols keep the guard's backtraces of parked threads readable.
COMMON_FLAGS = ["-O1", "-g", "-pthread", "-fno-omit-frame-pointer", "-Wall"]


class BuildError(Exception):
    """The compiler failed; the message holds the command and its output tail."""


class Unsupported(Exception):
    """This artifact cannot be built for this interpreter (a skip reason, not a failure)."""


def default_build_dir():
    return os.environ.get("PFGPY_BUILD_DIR") or \
        os.path.join(tempfile.gettempdir(), "pfgpy-build-%d" % os.getuid())


def _slug(s):
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in s).strip("_")


def _digest(sources, extra):
    h = hashlib.sha256()
    files = set(os.path.abspath(s) for s in sources)
    for d in set(os.path.dirname(s) for s in files) | set(INCLUDES):
        # Local headers change the program too: every header next to each source, and in
        # the include directories.
        files.update(glob.glob(os.path.join(d, "*.h")))
    for f in sorted(files):
        h.update(f.encode() + b"\0")
        with open(f, "rb") as fh:
            h.update(fh.read())
    for e in extra:
        h.update(repr(e).encode() + b"\0")
    return h.hexdigest()[:16]


def _run_compiler(cmd, out):
    """Run cmd, which writes to out + '.tmp<pid>', then atomically rename to out."""
    # Unique per process and thread: matrix jobs build in threads of one process.
    tag = ".tmp%d.%d" % (os.getpid(), threading.get_ident())
    tmp = out + tag
    cmd = [tmp if c == "@OUT@" else c for c in cmd]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        text = r.stdout.decode(errors="replace")
        tail = "\n".join(text.splitlines()[-25:])
        raise BuildError("compile failed (status %d): %s\n%s" % (
            r.returncode, " ".join(shlex.quote(c) for c in cmd), tail))
    os.replace(tmp, out)
    # Keep the command line for humans reproducing a cell by hand.
    with open(out + ".cmd" + tag, "w") as f:
        f.write(" ".join(shlex.quote(c) for c in cmd).replace(tmp, out) + "\n")
    os.replace(out + ".cmd" + tag, out + ".cmd")
    return out


def _is_cxx(sources, cxx):
    if cxx is not None:
        return cxx
    return any(s.endswith((".cc", ".cpp", ".cxx")) for s in sources)


def _libpython_ldflags(interp):
    # DT_RPATH (not RUNPATH) so that an inherited LD_LIBRARY_PATH cannot swap in another
    # libpython with the same soname (pyenv's and Debian's are both libpython3.11.so.1.0).
    return [interp.libpython, "-Wl,--disable-new-dtags", "-Wl,-rpath," + interp.libdir,
            "-ldl", "-lm"]


def _compile(sources, name, cxx, build_dir, subdir, flags, extra_cflags, ldflags,
             key_extra=(), suffix="", interp=None):
    """Compile and link sources into <build dir>/<subdir>/<name>-<hash><suffix>, unless
    there already: COMMON_FLAGS, flags, the language standard, INCLUDES, extra_cflags
    (for interp's architecture: pfgpy.build.toolchain)."""
    sources = [os.path.abspath(s) for s in sources]
    cc, cxx_, sysflags = toolchain(interp)
    is_cxx = _is_cxx(sources, cxx)
    compiler = cxx_ if is_cxx else cc
    name = name or os.path.splitext(os.path.basename(sources[0]))[0]
    flags = COMMON_FLAGS + sysflags + list(flags) + \
        (["-std=c++17"] if is_cxx else ["-std=gnu11"]) + \
        ["-I" + d for d in INCLUDES] + list(extra_cflags)
    key = _digest(sources, [compiler, flags, ldflags] + list(key_extra))
    outdir = os.path.join(build_dir or default_build_dir(), subdir)
    os.makedirs(outdir, exist_ok=True)
    out = os.path.join(outdir, "%s-%s%s" % (name, key, suffix))
    if os.path.exists(out):
        return out
    return _run_compiler([compiler] + flags + sources + ["-o", "@OUT@"] + ldflags, out)


def build_embed(interp, sources, build_dir=None, name=None, cxx=None,
                extra_cflags=(), extra_ldflags=()):
    """Compile an embedding program linked to interp's libpython (rpath set). Returns the
    executable's path."""
    if not interp.can_embed:
        raise Unsupported(interp.skip or "%s has no shared libpython to embed" % interp.name)
    return _compile(sources, name, cxx, build_dir, _slug(interp.name),
                    ["-I" + interp.include], extra_cflags,
                    _libpython_ldflags(interp) + list(extra_ldflags),
                    [interp.name, interp.libpython], interp=interp)


def build_host(sources, build_dir=None, name=None, cxx=None, extra_cflags=(), extra_ldflags=(),
               interp=None):
    """Compile a program that does not link libpython at all (it may dlopen one at run
    time, as PostgreSQL's plpython3u or uWSGI do), unless extra_ldflags link one. Returns
    the executable's path. interp: build for its architecture (default: this machine's)."""
    sysroot = getattr(interp, "sysroot", None)
    return _compile(sources, name, cxx, build_dir,
                    "hosts-" + interp.arch if sysroot else "hosts", [], extra_cflags,
                    ["-ldl"] + list(extra_ldflags), [sysroot] if sysroot else [],
                    interp=interp if sysroot else None)


def build_library(sources, build_dir=None, name=None, cxx=None, extra_cflags=()):
    """Compile a shared library that needs no Python at all (a C or C++ library a program
    binds with ctypes or cffi): built once, for every interpreter. Returns its path."""
    return _compile(sources, name, cxx, build_dir, "libs", ["-fPIC", "-shared"], extra_cflags,
                    [], suffix=".so")


def build_module(interp, sources, build_dir=None, name=None, cxx=None, extra_cflags=()):
    """Compile a shared library linked to interp's libpython (DT_NEEDED, rpath set), as an
    Apache module such as mod_wsgi is: a host that dlopens it maps libpython with it, and
    a dlclose of the module unmaps libpython again. Returns the library's path."""
    if not interp.can_embed:
        raise Unsupported(interp.skip or "%s has no shared libpython to link" % interp.name)
    return _compile(sources, name, cxx, build_dir, _slug(interp.name),
                    ["-fPIC", "-shared", "-I" + interp.include], extra_cflags,
                    _libpython_ldflags(interp), [interp.name, interp.libpython], suffix=".so",
                    interp=interp)


def pybind11_include(sysroot=None):
    """Directory holding pybind11/pybind11.h (Debian's python3-pybind11), or None; with
    sysroot, the one in that sysroot."""
    for d in ("/usr/include", "/usr/local/include"):
        d = (sysroot or "") + d
        if os.path.isfile(os.path.join(d, "pybind11", "pybind11.h")):
            return d
    return None


def build_extension(interp, modname, sources, build_dir=None, cxx=None, pybind11=False,
                    extra_cflags=()):
    """Compile an extension module for interp. It is not linked to libpython (the host
    process provides the C API, as for any wheel). Returns the directory to put on
    PYTHONPATH; the module file is <dir>/<modname><EXT_SUFFIX>."""
    if interp.skip:
        raise Unsupported(interp.skip)
    if not interp.ext_suffix:
        raise Unsupported("%s reports no EXT_SUFFIX" % interp.name)
    sources = [os.path.abspath(s) for s in sources]
    cxx = True if pybind11 else _is_cxx(sources, cxx)
    cc, cxx_, sysflags = toolchain(interp)
    compiler = cxx_ if cxx else cc
    flags = COMMON_FLAGS + sysflags + ["-fPIC", "-shared", "-I" + interp.include] + \
        ["-I" + d for d in INCLUDES]
    flags += ["-std=c++17"] if cxx else ["-std=gnu11"]
    if pybind11:
        sysroot = getattr(interp, "sysroot", None) or ""
        inc = pybind11_include(sysroot or None)
        if inc is None:
            raise Unsupported("pybind11 headers not found (install python3-pybind11)")
        # pybind11's documented recommendation: hidden visibility for module internals.
        if inc not in (sysroot + "/usr/include", sysroot + "/usr/local/include"):  # already
            flags += ["-isystem", inc]            # searched; an -isystem would break include_next
        flags += ["-fvisibility=hidden"]
        # pybind11 is header-heavy: -O0 halves the compile (~10 s instead of ~20 s per
        # interpreter here); the module's behaviour does not depend on optimization.
        flags = ["-O0" if f == "-O1" else f for f in flags]
    flags += list(extra_cflags)
    key = _digest(sources, [compiler, flags, interp.name, interp.include, interp.ext_suffix])
    outdir = os.path.join(build_dir or default_build_dir(), _slug(interp.name),
                          "%s-%s" % (modname, key))
    os.makedirs(outdir, exist_ok=True)
    out = os.path.join(outdir, modname + interp.ext_suffix)
    if os.path.exists(out):
        return outdir
    bad = os.path.join(outdir, "UNSUPPORTED")
    if os.path.exists(bad):
        with open(bad) as f:
            raise Unsupported(f.read().strip())
    try:
        _run_compiler([compiler] + flags + sources + ["-o", "@OUT@", "-ldl"], out)
    except BuildError as e:
        if pybind11 and "pybind11/" in _first_error(str(e)):
            # Debian's pybind11 (2.10) predates some CPython releases; a compile failure
            # there is a property of the pair, recorded once as a skip reason.
            reason = "pybind11 %s does not compile against Python %s: %s" % (
                pybind11_version(getattr(interp, "sysroot", None)) or "?", interp.version_str,
                _first_error(str(e)))
            with open(bad, "w") as f:
                f.write(reason + "\n")
            raise Unsupported(reason)
        raise
    return outdir


def _first_error(text):
    for line in text.splitlines():
        if "error:" in line:
            return line.strip()[:200]
    return text.splitlines()[-1][:200] if text else ""


def pybind11_version(sysroot=None):
    inc = pybind11_include(sysroot)
    if not inc:
        return None
    v = {}
    with open(os.path.join(inc, "pybind11", "detail", "common.h")) as f:
        for line in f:
            for k in ("MAJOR", "MINOR", "PATCH"):
                if line.startswith("#define PYBIND11_VERSION_" + k):
                    v[k] = line.split()[2]
    return "%s.%s.%s" % (v.get("MAJOR"), v.get("MINOR"), v.get("PATCH"))


def build_pfgtest(interp, build_dir=None):
    """The test extension `pfgtest` (pfgpy/c/pfgtest.c) for interp. Returns the
    directory to put on PYTHONPATH. API: pfgtest.late_ensure(), block_in_allow_threads(),
    wake_fd_at_exit(fd), register_thread(name); see pfgtest.c."""
    return build_extension(interp, "pfgtest", [source("pfgtest.c")], build_dir)


def build_pfgbind(interp, build_dir=None):
    """The pybind11 test module `pfgbind` (pfgbind.cc, found by source(): the tests add
    tests/scenarios with add_source_dir)."""
    return build_extension(interp, "pfgbind", [source("pfgbind.cc")],
                           build_dir, pybind11=True)


def clean(build_dir=None):
    shutil.rmtree(build_dir or default_build_dir(), ignore_errors=True)
