"""One parser of what the guard writes: its exit summary line and its park reports
(docs/diagnostics.md).

    pyfinguard: 1 thread parked after Python finalization began, 1 still present at exit; 1 reported, 1 routine
    (with PYFINGUARD_LOG=FILE: "1 reported in FILE, 1 routine")
    pyfinguard: parked thread 1234 'worker' in PyEval_RestoreThread (generation 1, runtime finalized, 3 ms ...

    from pfgpy import summary
    s = summary.exit_summary(stderr)    # the last summary line, or None
    s.parked, s.present, s.reported, s.routine   (reported/routine None when not printed)
    summary.parks(text)                 # [Park(tid, name, api, generation, why), ...]
"""
import collections
import re

# Older builds wrote "thread(s)" and no "began"; both are still read.
SUMMARY_RE = re.compile(r"^pyfinguard: (\d+) threads? ?(?:\(s\))? parked after Python "
                        r"finalization(?: began)?, (\d+) still present at exit"
                        r"(?:; (\d+) reported(?: in .*?)?, (\d+) routine)?", re.M)
PARK_RE = re.compile(r"^pyfinguard: parked thread (\d+) '(.*?)' in (\S+) "
                     r"\(generation (\d+), ([^,]+),", re.M)

Summary = collections.namedtuple("Summary", "parked present reported routine")
# why: "runtime finalizing", "runtime finalized", "CPython terminating the thread", ...
Park = collections.namedtuple("Park", "tid name api generation why")


def exit_summaries(text):
    return [Summary(*[None if x is None else int(x) for x in m.groups()])
            for m in SUMMARY_RE.finditer(text)]


def exit_summary(text):
    """The last exit summary in text (a process may print one per runtime), or None."""
    s = exit_summaries(text)
    return s[-1] if s else None


def parks(text):
    return [Park(int(m.group(1)), m.group(2), m.group(3), int(m.group(4)), m.group(5))
            for m in PARK_RE.finditer(text)]
