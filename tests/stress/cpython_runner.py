"""Run inside the interpreter under test: CPython's own regrtest on one test module, in
this process, with every test outcome appended (one JSON line each, flushed) to a file.

    python cpython_runner.py OUTFILE test_threading

Why not parse `python -m test -v` output: test output, subprocess output and docstrings
interleave with the "... ok" lines. Every runner regrtest builds (3.6-3.13) is a
unittest.TextTestRunner, so hooking unittest.TestResult sees each outcome exactly
once, and the file keeps what finished even if the interpreter crashes.
Compatible with Python 3.6.
"""
import json
import sys
import unittest

OUT = open(sys.argv[1], "a")


def _rec(test, outcome, detail=""):
    OUT.write(json.dumps([test.id() if hasattr(test, "id") else str(test), outcome,
                          detail[-2000:]]) + "\n")
    OUT.flush()


def _wrap(name, outcome, detail_of=None):
    orig = getattr(unittest.TestResult, name)

    def hook(self, test, *args):
        orig(self, test, *args)
        if name == "addSubTest":
            if args[1] is None:
                return
            test, detail = args[0], self._exc_info_to_string(args[1], test)
        elif detail_of is not None:
            detail = detail_of(self, args)
        else:
            detail = ""
        _rec(test, outcome, detail)
    setattr(unittest.TestResult, name, hook)


# The base class: every result class regrtest uses (3.6-3.13) derives from it and calls
# up to it, so each outcome is seen exactly once whatever runner regrtest builds.
_wrap("addSuccess", "pass")
_wrap("addFailure", "fail", lambda self, a: self.failures[-1][1] if self.failures else "")
_wrap("addError", "fail", lambda self, a: self.errors[-1][1] if self.errors else "")
_wrap("addSkip", "skip", lambda self, a: str(a[0]))
_wrap("addExpectedFailure", "pass", lambda self, a: "expected failure")
_wrap("addUnexpectedSuccess", "fail", lambda self, a: "unexpected success")
_wrap("addSubTest", "fail")

from test.libregrtest.main import main  # noqa: E402

sys.argv = ["regrtest", "-v"] + sys.argv[2:]
main()
