"""Shared helpers for pyfinguard's tests, launcher and benchmarks.

    sys.path.insert(0, os.path.join(REPO, "tools"))
    from pfgpy import interpreters, build

interpreters.discover() lists the interpreters and libpythons on this machine;
build.build_embed() / build.build_extension() / build.build_pfgtest() compile programs and
modules for one of them (cached by source hash).
"""
__all__ = ["interpreters", "build"]
