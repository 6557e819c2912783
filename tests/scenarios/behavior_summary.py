#!/usr/bin/env python3
"""README's summary of docs/behavior.md, written from the tables tests/matrix.py generates.

    behavior_summary.py [ROOT]            check: exit 1 when README.md's summary is not the
                                          one docs/behavior.md gives (ROOT: the source tree)
    behavior_summary.py --write [ROOT]    write it into README.md

README.md keeps no copy of the tables: a few sentences between its markers, counted here
from each generated section of docs/behavior.md (the interpreters of this machine, and
Debian unstable's when that section is there). A scenario whose baseline is `ok` in every
cell is an ordinary program; every other one has a thread that reaches for the GIL after
finalization.
"""
import os
import re
import sys

BEGIN = ('<!-- behavior summary: written by tests/scenarios/behavior_summary.py --write '
         'from docs/behavior.md; do not edit -->')
END = '<!-- end of behavior summary -->'
SECTION = re.compile(r'<!-- tests/matrix\.py --table-section ([\w-]+): generated, do not edit -->\n'
                     r'(.*?)<!-- end of section \1 -->', re.S)
ROW = re.compile(r'^\| \*\*([^*]+)\*\* [^|]*((?:\|[^|]*)+)\|$')


def tables(behavior):
    """{section: (interpreters, {scenario: [cell, ...]})} from the generated sections."""
    out = {}
    for name, body in SECTION.findall(behavior):
        lines = body.splitlines()
        head = next((l for l in lines if l.startswith('| scenario |')), None)
        if head is None:
            continue
        interps = [c.strip() for c in head.strip('|').split('|')[1:]]
        rows = {}
        for l in lines:
            m = ROW.match(l)
            if m:
                rows[m.group(1)] = [c.strip() for c in m.group(2).strip('|').split('|')]
        out[name] = (interps, rows)
    return out


def outcomes(cells, side):
    """The outcomes of one side (0: without the guard, 1: with it) of the cells that apply."""
    seen = {}
    for c in cells:
        if '->' not in c:
            continue
        for o in c.split('->')[side].strip().replace(' (unmeasured)', '').split('/'):
            seen[o] = seen.get(o, 0) + 1
    return seen


def words(counts):
    """'SIGSEGV (60), exited (21) or abort (9)', most frequent first."""
    items = ['`%s` (%d)' % (o, n) for o, n in sorted(counts.items(), key=lambda x: (-x[1], x[0]))]
    return items[0] if len(items) == 1 else ', '.join(items[:-1]) + ' or ' + items[-1]


def section_text(name, interps, rows):
    rows = {s: c for s, c in rows.items() if any('->' in x for x in c)}
    late = {s: c for s, c in rows.items() if set(outcomes(c, 0)) != {'ok'}}
    ordinary = {s: c for s, c in rows.items() if s not in late}
    late_cells = [x for c in late.values() for x in c if '->' in x]
    ord_cells = [x for c in ordinary.values() for x in c if '->' in x]
    where = {'host': "This machine's %d interpreters" % len(interps),
             'sid': "Debian unstable's %d interpreters (suite `sid`)" % len(interps),
             'trixie': "Debian 13's %d interpreters (suite `trixie`)" % len(interps),
             'arm64-bookworm': "Debian 12 arm64 under qemu-user, %d interpreters (suite `arm64`)"
                               % len(interps),
             'arm64-trixie': "Debian 13 arm64 under qemu-user, %d interpreters (suite `arm64`)"
                             % len(interps),
             }.get(name, 'Section %s, %d interpreters' % (name, len(interps)))
    text = ('%s: %d scenarios have a thread reach for the GIL after finalization; their %d '
            'cells end in %s without the guard (a cell may show several outcomes of repeated '
            'runs), and in %s with it.'
            % (where, len(late), len(late_cells), words(outcomes(late_cells, 0)),
               words(outcomes(late_cells, 1))))
    if ordinary:
        same = sum(1 for x in ord_cells if x == 'ok -> ok')
        text += (' The %d ordinary programs: `ok -> ok` (the same output and status) in %d of '
                 'their %d cells.' % (len(ordinary), same, len(ord_cells)))
    return text


def summary(behavior):
    parts = [section_text(n, i, r) for n, (i, r) in tables(behavior).items()]
    return '\n\n'.join(parts) + '\n'


def main(argv):
    if '-h' in argv or '--help' in argv:
        print(__doc__)
        return 0
    write = '--write' in argv
    args = [a for a in argv if a != '--write']
    if any(a.startswith('-') for a in args) or len(args) > 1:
        print('usage: behavior_summary.py [--write] [ROOT] (--help: what it does)', file=sys.stderr)
        return 2
    root = args[0] if args else os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..')
    with open(os.path.join(root, 'docs', 'behavior.md'), encoding='utf-8') as fh:
        want = summary(fh.read())
    readme = os.path.join(root, 'README.md')
    with open(readme, encoding='utf-8') as fh:
        text = fh.read()
    if BEGIN not in text or END not in text:
        print('README.md: no summary between %r and %r' % (BEGIN, END))
        return 1
    head, rest = text.split(BEGIN, 1)
    have, tail = rest.split(END, 1)
    if have.strip('\n') + '\n' == want:
        print('README.md: the behavior summary agrees with docs/behavior.md')
        return 0
    if not write:
        print('README.md: the behavior summary differs from docs/behavior.md; run %s --write'
              % os.path.relpath(os.path.abspath(__file__), os.path.abspath(root)))
        print('expected:\n' + want)
        return 1
    with open(readme, 'w', encoding='utf-8') as fh:
        fh.write(head + BEGIN + '\n' + want + END + tail)
    print('README.md: behavior summary written')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
