"""Helpers shared by the deployment tests (tests/deploy/test_*.py).

The tests run the launcher from the source tree (tools/pyfinguard) against the library of
the Meson build that runs them: meson passes its path in PYFINGUARD_LIBRARY. Run by hand,
they use <repo>/build/shim/libpyfinguard.so (tools/setup builds it).
"""
import os
import socket
import subprocess
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.environ.get("PYFINGUARD_SOURCE_ROOT") or os.path.dirname(os.path.dirname(HERE))
LAUNCHER = os.path.join(REPO, "tools", "pyfinguard")
SKIP = 77   # meson's "skipped" exit status

sys.path.insert(0, os.path.join(REPO, "tools"))
from pfgpy import build, env, interpreters, library as pfgpy_library  # noqa: E402,F401
from pfgpy.run import no_core  # noqa: E402  (crashes are expected: no core files)

# pfgbind.cc, the pybind11 test module, is one of the scenario programs.
build.add_source_dir(os.path.join(REPO, "tests", "scenarios"))


def library():
    lib = pfgpy_library.find(use_env=True)
    if lib is None:
        raise SystemExit("library %s not built (run tools/setup)" % (
            os.environ.get("PYFINGUARD_LIBRARY") or pfgpy_library.in_tree()))
    return lib


def free_port():
    # Bind port 0 to let the kernel choose a high port on 127.0.0.1; the window before the
    # program under test binds it is acceptable on a test machine.
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def project_version():
    import re
    with open(os.path.join(REPO, "meson.build")) as f:
        return re.search(r"version\s*:\s*'([^']+)'", f.read()).group(1)


def base_env(**kw):
    """os.environ without any guard settings inherited from the caller, plus kw."""
    return env.scrubbed(python=None, keep=("PYFINGUARD_LIBRARY",),
                        set=dict({"PYFINGUARD_LIBRARY": library()}, **kw))


def launch(args, env=None, timeout=120, launcher=LAUNCHER, **kw):
    """Run the launcher (through its shebang, as a user would); returns CompletedProcess
    with text stdout/stderr."""
    return subprocess.run([launcher] + list(args), env=env if env is not None else base_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=timeout, preexec_fn=no_core, **kw)


_interps = None


def interps():
    global _interps
    if _interps is None:
        _interps = interpreters.discover()
    return _interps


class NoInterpreter(unittest.SkipTest):
    """A unittest skip; scripts outside unittest turn it into exit status SKIP."""


def interp(pred, why):
    """First discovered interpreter satisfying pred, or raise NoInterpreter."""
    for i in interps():
        if i.skip is None and pred(i):
            return i
    raise NoInterpreter("no interpreter on this machine: %s" % why)


def debian_python():
    """Debian's statically linked /usr/bin/python3.X: the hard case and what most
    deployments run."""
    return interp(lambda i: i.kind == "static exe" and i.executable.startswith("/usr/bin/"),
                  "Debian static /usr/bin/python3.X")
