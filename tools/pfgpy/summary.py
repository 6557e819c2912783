"""One parser of what the guard writes: its exit summary line and its park reports
(docs/diagnostics.md).

    pyfinguard: 1 thread parked after Python finalization began, 1 still present at exit; 1 reported, 1 routine
    pyfinguard: 0 threads parked after Python finalization began, 0 still present at exit, 2 ended with pthread_exit as this CPython ends late threads; 2 reported, 0 routine
    (with PYFINGUARD_LOG=FILE: "1 reported in FILE, 1 routine")
    pyfinguard: parked thread 1234 'worker' in PyEval_RestoreThread (generation 1, runtime finalized, 3 ms ...

    from pfgpy import summary
    s = summary.exit_summary(stderr)    # the last summary line, or None
    s.parked, s.present, s.reported, s.routine, s.ended   (reported/routine None when not printed)
    summary.parks(text)                 # [Park(tid, name, api, generation, why, ended), ...]
"""
import collections
import re

# Older builds wrote "thread(s)" and no "began"; both are still read.
SUMMARY_RE = re.compile(r"^pyfinguard: (\d+) threads? ?(?:\(s\))? parked after Python "
                        r"finalization(?: began)?, (\d+) still present at exit"
                        r"(?:, (\d+) ended with pthread_exit as this CPython ends late threads)?"
                        r"(?:; (\d+) reported(?: in .*?)?, (\d+) routine)?", re.M)
# "ended thread": ended with pthread_exit as this CPython ends late threads (docs/design.md).
PARK_RE = re.compile(r"^pyfinguard: (parked|ended) thread (\d+) '(.*?)' in (\S+) "
                     r"\(generation (\d+), ([^,]+),", re.M)

Summary = collections.namedtuple("Summary", "parked present reported routine ended")
# why: "runtime finalizing", "runtime finalized", "CPython terminating the thread", ...
Park = collections.namedtuple("Park", "tid name api generation why ended")


def exit_summaries(text):
    out = []
    for m in SUMMARY_RE.finditer(text):
        parked, present, ended, reported, routine = [None if x is None else int(x) for x in m.groups()]
        out.append(Summary(parked, present, reported, routine, ended or 0))
    return out


def exit_summary(text):
    """The last exit summary in text (a process may print one per runtime), or None."""
    s = exit_summaries(text)
    return s[-1] if s else None


def parks(text):
    return [Park(int(m.group(2)), m.group(3), m.group(4), int(m.group(5)), m.group(6),
                 m.group(1) == "ended")
            for m in PARK_RE.finditer(text)]
