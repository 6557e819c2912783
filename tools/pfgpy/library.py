"""One finder of libpyfinguard.so for the tests and tools that run from the source tree.
(The launcher, tools/pyfinguard, has its own order, for an installed copy too:
docs/deployment.md.)

    from pfgpy import library
    lib = library.find(explicit=args.lib, use_env=True)    # None when not found

An explicit choice -- `explicit` (a --lib option), else $PYFINGUARD_LIBRARY when `use_env`
-- is the answer when it is a file and None when it is not: a wrong explicit choice is
never silently replaced. Without one, <repo>/<d>/shim/libpyfinguard.so for the first d
in `build_dirs` where it is a file. Paths are returned absolute.
"""
import os

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
LIBNAME = "libpyfinguard.so"


def in_tree(build_dir="build"):
    return os.path.join(REPO, build_dir, "shim", LIBNAME)


def find(explicit=None, use_env=False, build_dirs=("build",)):
    explicit = explicit or (os.environ.get("PYFINGUARD_LIBRARY") if use_env else None)
    for c in [explicit] if explicit else [in_tree(d) for d in build_dirs]:
        if os.path.isfile(c):
            return os.path.abspath(c)
    return None
