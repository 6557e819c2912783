"""One environment scrubber for every child process the tests, tools and launcher start.

    from pfgpy import env
    e = env.scrubbed()                                   # the defaults below
    e = env.scrubbed(python="all", drop=("LD_LIBRARY_PATH",), preload=lib)

What is always removed from the caller's environment (os.environ unless `base` is given):

* every `PYFINGUARD_*` variable (the guard's settings: a child gets only those the caller
  asks for), except the names in `keep`;
* `LD_PRELOAD` (which guard, if any, the child runs under), unless `other_preloads` is
  true: then only the entries that are a pyfinguard library go, the others stay after
  `preload`.

What is removed of Python's settings, by `python`:

* "startup" (default): `PYTHONHOME`, `PYTHONPATH`, `PYTHONSTARTUP` -- which Python runs
  and what it imports first;
* "all": every `PYTHON*` variable (unbuffered output, dev mode, tracemalloc, ... too);
* None: nothing.

Then `drop` (more names to remove), `preload` (a library put first in LD_PRELOAD) and
`set` (names to set; a value None removes the name) are applied, in that order.
Callers that remove more than the defaults say so with `python` and `drop`, so every
difference between two scrubs is visible at the call.
"""
import os
import re

LIBNAME = "libpyfinguard.so"
PYTHON_STARTUP = ("PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP")


def is_guard(entry):
    """True when an LD_PRELOAD entry names a pyfinguard library."""
    return os.path.basename(entry).startswith(LIBNAME)


def scrubbed(base=None, python="startup", keep=(), other_preloads=False, drop=(),
             preload=None, set=None):
    env = dict(os.environ if base is None else base)
    others = [e for e in re.split(r"[:\s]+", env.get("LD_PRELOAD", ""))
              if e and not is_guard(e)] if other_preloads else []
    for k in list(env):
        if (k.startswith("PYFINGUARD_") and k not in keep) or k == "LD_PRELOAD" or \
                (python == "startup" and k in PYTHON_STARTUP) or \
                (python == "all" and k.startswith("PYTHON")) or k in drop:
            del env[k]
    pre = ([preload] if preload else []) + others
    if pre:
        env["LD_PRELOAD"] = ":".join(pre)
    for k, v in (set or {}).items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env
