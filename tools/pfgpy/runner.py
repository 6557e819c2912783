"""The one small test runner of the harnesses in tests/: a Cell per case with its verdict,
the cells run in parallel and printed in a stable order, the closing summary line and the
exit status. The child processes themselves are run by pfgpy.run.

    from pfgpy import runner
    def one(it):
        c = runner.Cell(it.name)
        ...                           # c.status = "FAIL"; c.reason = "..."; c.detail = tail
        return c
    cells = runner.execute(one, [(it,) for it in its], jobs=2)   # prints c.line() each
    print(runner.summary("reports json", cells, t0))
    return runner.exit_status(cells)

Verdicts: PASS, FAIL, SKIP (with its reason: a case that cannot run here is said, never
passed silently), and the harness's own (XFAIL, XPASS, GAP) where it has them.
The harnesses that print a table (tests/stress, tests/differential) collect problems
instead: runner.finish() prints them and the "N passed, N failed" line.
"""
import collections
import concurrent.futures
import sys
import time

from .scenario import uniq

PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"
SKIP_STATUS = 77    # meson test's "skipped"


class Cell(object):
    """One case's verdict. Subclasses say what the case is (head()) and what it saw
    (body()); line() is the harness's output line."""
    detail_on = (FAIL,)     # the verdicts whose line carries the detail (an output tail)
    reason_fmt = "  (%s)"   # how a reason follows the body; None: body() shows it

    def __init__(self, name="", status=None):
        self.name, self.status = name, status
        self.reason, self.detail = "", ""
        self.secs = 0.0

    def skip(self, why):
        self.status, self.reason = SKIP, why
        return self

    def head(self):
        return "%-4s %s" % (self.status, self.name)

    def body(self):
        return ""

    def line(self):
        txt = self.head()
        if self.status == SKIP:
            return txt + " " + self.reason
        txt += self.body()
        if self.reason and self.reason_fmt:
            txt += self.reason_fmt % self.reason
        if self.detail and self.status in self.detail_on:
            txt += "\n" + self.detail
        return txt


class Sides(Cell):
    """A case run without and with the guard: the outcome words of each side's runs."""

    def __init__(self, name="", status=None):
        Cell.__init__(self, name, status)
        self.baseline, self.guarded = [], []
        self.unmeasured = False     # no baseline measured for this CPython release

    def body(self):
        return " baseline=%s guarded=%s" % ("/".join(uniq(self.baseline)) or "-",
                                            "/".join(uniq(self.guarded)) or "-")


def first_difference(texts, width=100):
    """Where a guarded run's output first differs from the baseline's, in one line
    ("stdout line 3: 'a' vs guarded 'b'"), or None. texts: (what, baseline, guarded)."""
    for what, x, y in texts:
        xl, yl = x.splitlines(), y.splitlines()
        for i in range(max(len(xl), len(yl))):
            a = xl[i] if i < len(xl) else "<none>"
            g = yl[i] if i < len(yl) else "<none>"
            if a != g:
                return "%s line %d: %r vs guarded %r" % (what, i + 1, a[:width], g[:width])
    return None


def timed(fn):
    """fn, which returns a Cell, with the Cell's secs set to the time it took."""
    def call(*args):
        t0 = time.monotonic()
        c = fn(*args)
        c.secs = time.monotonic() - t0
        return c
    return call


def execute(fn, cases, jobs=2, show=True, out=sys.stdout):
    """fn(*case) for every case, `jobs` at a time; the results in the order of `cases`,
    each printed (its line(), or show(result) when show is a function) as soon as it and
    every earlier one are done."""
    done = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as ex:
        for f in [ex.submit(fn, *case) for case in cases]:
            r = f.result()
            done.append(r)
            if show:
                text = show(r) if callable(show) else r.line()
                if text is not None:
                    out.write(text + "\n")
                    out.flush()
    return done


def count(cells):
    return collections.Counter(c.status for c in cells)


def summary(prefix, cells, t0, words=(PASS, FAIL, SKIP), optional=()):
    """'<prefix>: 3 PASS, 0 FAIL, 1 SKIP in 12 s'. A word may carry a label ("XFAIL (known
    gaps)"); an `optional` word is shown only when some cell has it."""
    n = count(cells)
    parts = ["%d %s" % (n[w.split()[0]], w) for w in words]
    parts += ["%d %s" % (n[w.split()[0]], w) for w in optional if n[w.split()[0]]]
    return "%s: %s in %.0f s" % (prefix, ", ".join(parts), time.monotonic() - t0)


def exit_status(cells, failing=(FAIL,), skipped=None):
    """1 when a cell has a failing verdict; `skipped` (SKIP_STATUS) when none passed."""
    n = count(cells)
    if any(n[w] for w in failing):
        return 1
    return skipped if skipped is not None and not n[PASS] else 0


def select(items, names, key=lambda x: x.name):
    """The items whose name contains one of the comma-separated (or listed) substrings;
    all when names is empty."""
    if isinstance(names, str):
        names = [w.strip() for w in names.split(",")]
    subs = [w for w in (names or []) if w]
    return [i for i in items if any(s in key(i) for s in subs)] if subs else list(items)


def finish(problems, passed, failed=None, more="", notes=(), label="PROBLEM: ",
           out=sys.stdout):
    """The closing lines of a table harness: each problem (after `label`), the `notes`
    lines, then 'N passed, N failed' (failed: len(problems) unless given) and `more`
    (", 2 skipped"); returns the exit status: 1 when anything failed."""
    failed = len(problems) if failed is None else failed
    for p in problems:
        out.write(label + p + "\n")
    for n in notes:
        out.write(n + "\n")
    out.write("%d passed, %d failed%s\n" % (passed, failed, more))
    out.flush()
    return 1 if problems or failed else 0
