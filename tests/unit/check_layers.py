#!/usr/bin/env python3
"""The shim's layers, checked: no include cycle between modules, no include of a higher
layer from a lower one, no file over 450 lines (docs/design.md, "Layers").

    check_layers.py [--doc DESIGN_MD] [SHIM_DIR]  check (default: the shim/ next to tests/);
                                                  with --doc, also that DESIGN_MD's layer
                                                  table is the one written below
    check_layers.py --write-doc DESIGN_MD         write the layer table into DESIGN_MD
    check_layers.py --self-test [SHIM_DIR]        show that a back-edge fails the check

A module is a file of shim/ named without its extension (window.h and window.cc are
"window"), or a folder of shim/ with every source file in it (shim/patch/ is "patch");
intercepted.def belongs to "interpose". An edge is a `#include "..."` of another
module's file. Includes within a layer are allowed as long as they form no cycle. Inside
a folder, its files (named the same way: patch/arena.h and patch/arena.cc are
"patch/arena") must not include each other in a cycle either.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

# The one place the layers are declared; docs/design.md's table is written from it
# (--write-doc) and the test `layers` fails when the two differ. Lower numbers are lower
# layers; a module may include only its own layer and those below.
LAYERS = {
    'state': 0, 'writer': 0, 'config': 0, 'patch': 0,
    'interpose': 1, 'dlopen': 1, 'backtrace': 1, 'threadscan': 1, 'images': 1, 'probes': 1, 'sink': 1, 'parkrecord': 1,
    'policy': 1,
    'facts': 2, 'window': 2, 'gilwait': 2, 'lifecycle': 2, 'park': 2, 'report': 2, 'summary': 2, 'exitwatch': 2, 'pep788': 2,
    'runtime': 3,
    'hooks': 4, 'libc_hooks': 4, 'preload': 4,
}
LAYER_TEXT = {
    0: "plain data, formatting and the platform's mechanics: nothing here knows about "
       "CPython's lifecycle",
    1: "mechanics: reaching functions and images, reading CPython's flags, where a report goes; "
       "and `policy`, every rule of who is stopped and how, as pure functions of what a hook saw",
    2: "the live facts the policy reads (`facts`) and the mechanisms its verdicts use; within the layer `window` wakes `gilwait`'s waiters, "
       "`gilwait` parks, `park` reports, sums up and hands its threads to `exitwatch`, which "
       "reports and sums up too; `pep788` counts the guards extensions hold (PEP 788 on 3.6-3.14)",
    3: "detection and take-over, which start the mechanisms (`window_init`) and forget an "
       "unmapped image's state in them (`gilwait_forget_range`)",
    4: "the hooks on top: they gather what a call sees, ask `policy` and act on its verdict; "
       "`preload` orchestrates what crosses mechanisms, such as the fork handler",
}
# docs/design.md: the table between these lines is written by --write-doc.
DOC_BEGIN = '<!-- layers: written by tests/unit/check_layers.py --write-doc docs/design.md; edit LAYERS there -->'
DOC_END = '<!-- end of layers -->'
# A row of design.md's "Pieces" table: | layer | `shim/file` ... | what it does |
PIECE = re.compile(r'^\| (\d+) \| `shim/([^`]+)`')
MAX_LINES = 450
SOURCE = re.compile(r'\.(h|cc|def)$')
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def unit_of(rel):
    """The file rel (relative to shim/, '/'-separated) named without its extension:
    'window', 'patch/arena'. Within a folder, the nodes of its own cycle check."""
    if rel == 'intercepted.def':
        return 'interpose'
    return SOURCE.sub('', rel)


def module_of(rel):
    """The module of the file rel: its folder under shim/, or its own unit."""
    return unit_of(rel).split('/')[0]


def sources(shim):
    """Every source file under shim/, relative to it with '/' separators, sorted."""
    out = []
    for d, dirs, files in os.walk(shim):
        dirs.sort()
        for f in files:
            if SOURCE.search(f):
                out.append(os.path.relpath(os.path.join(d, f), shim).replace(os.sep, '/'))
    return sorted(out)


def resolve(shim, rel, inc):
    """The file under shim/ that `#include "inc"` in rel names, as the compiler finds it
    (the including file's folder first, then shim/ itself), or None for a file outside
    shim/ (../include/pyfinguard.h)."""
    root = os.path.realpath(shim)
    for base in (os.path.dirname(os.path.join(root, rel)), root):
        path = os.path.normpath(os.path.join(base, inc))
        if os.path.isfile(path) and path.startswith(root + os.sep):
            return os.path.relpath(path, root).replace(os.sep, '/')
    return None


def layer_table():
    """The markdown table of the layers, as docs/design.md shows it."""
    rows = ['| layer | modules | what the layer is |', '|---|---|---|']
    for n in sorted(LAYER_TEXT):
        mods = ', '.join('`%s`' % m for m in LAYERS if LAYERS[m] == n)
        rows.append('| %d | %s | %s |' % (n, mods, LAYER_TEXT[n]))
    return '\n'.join(rows) + '\n'


def doc_problems(doc):
    """What differs between LAYERS and the design document: its generated layer table,
    and the layer column of its "Pieces" table (one row per file)."""
    with open(doc, encoding='utf-8') as fh:
        text = fh.read()
    name = os.path.basename(doc)
    problems = []
    if DOC_BEGIN not in text or DOC_END not in text:
        return ['%s: no layer table between %r and %r' % (name, DOC_BEGIN, DOC_END)]
    table = text.split(DOC_BEGIN, 1)[1].split(DOC_END, 1)[0].strip('\n') + '\n'
    if table != layer_table():
        problems.append('%s: the layer table differs from LAYERS in %s (run: %s --write-doc %s)'
                        % (name, os.path.basename(__file__), os.path.basename(__file__), doc))
    seen = set()
    for line in text.splitlines():
        m = PIECE.match(line)
        if not m:
            continue
        mod = module_of(re.sub(r'\.\{[^}]*\}$', '.h', m.group(2)))  # state.{h,cc}, patch/
        seen.add(mod)
        if LAYERS.get(mod) != int(m.group(1)):
            problems.append('%s: Pieces says shim/%s is layer %s, LAYERS says %s'
                            % (name, m.group(2), m.group(1), LAYERS.get(mod)))
    for mod in sorted(set(LAYERS) - seen):
        problems.append('%s: module %s has no row in Pieces' % (name, mod))
    return problems


def write_doc(doc):
    with open(doc, encoding='utf-8') as fh:
        text = fh.read()
    if DOC_BEGIN not in text or DOC_END not in text:
        print('%s: add the lines %r and %r where the table goes' % (doc, DOC_BEGIN, DOC_END))
        return 1
    head, rest = text.split(DOC_BEGIN, 1)
    tail = rest.split(DOC_END, 1)[1]
    new = head + DOC_BEGIN + '\n' + layer_table() + DOC_END + tail
    if new != text:
        with open(doc, 'w', encoding='utf-8') as fh:
            fh.write(new)
    print('%s: layer table %s' % (doc, 'written' if new != text else 'already current'))
    return 0


def route(graph, start, goal):
    """The shortest path start -> ... -> goal in graph, or None."""
    prev, todo = {start: None}, [start]
    while todo:
        m = todo.pop(0)
        if m == goal:
            path = []
            while m is not None:
                path.append(m)
                m = prev[m]
            return path[::-1]
        for n in graph.get(m, []):
            if n not in prev:
                prev[n] = m
                todo.append(n)
    return None


def check(shim):
    """Returns the list of problems (empty: the layering holds)."""
    problems = []
    edges = {}  # (from, to) -> "file: #include" that makes it
    for f in sources(shim):
        with open(os.path.join(shim, f), encoding='utf-8') as fh:
            text = fh.read()
        lines = text.count('\n')
        if lines > MAX_LINES:
            problems.append('%s: %d lines (at most %d)' % (f, lines, MAX_LINES))
        src = module_of(f)
        if src not in LAYERS:
            problems.append('%s: module %r has no layer (add it to LAYERS in %s and to '
                            'docs/design.md)' % (f, src, os.path.basename(__file__)))
            continue
        for inc in INCLUDE.findall(text):
            target = resolve(shim, f, inc)
            if target is None:
                continue  # outside shim/ (../include/pyfinguard.h)
            dst = module_of(target)
            if dst == src:
                # Within a folder: an edge between two of its files, for the cycle check.
                a, b = unit_of(f), unit_of(target)
                if a != b:
                    edges.setdefault((a, b), '%s: #include "%s"' % (f, inc))
                continue
            edges.setdefault((src, dst), '%s: #include "%s"' % (f, inc))
            if dst in LAYERS and LAYERS[dst] > LAYERS[src]:
                problems.append('upward include: %s (%s, layer %d -> %s, layer %d)' %
                                (edges[(src, dst)], src, LAYERS[src], dst, LAYERS[dst]))
    # Cycles between modules (within a layer too), and between the files of a folder:
    # every edge a -> b from which a can be reached again, printed with the path that
    # closes it. The two kinds of edges share no node ('patch' is not 'patch/arena').
    graph = {}
    for (a, b) in sorted(edges):
        graph.setdefault(a, []).append(b)
    for (a, b) in sorted(edges):
        path = route(graph, b, a)
        if path:
            cyc = [a] + path
            problems.append('include cycle: ' + ' -> '.join(cyc) + '  (' + '; '.join(
                edges[(cyc[i], cyc[i + 1])] for i in range(len(cyc) - 1)) + ')')
    return problems


def self_test(shim):
    """The check must fail on a copy of shim/ with a back-edge added (a cycle between
    modules or between the files of a folder, an upward include, from the shim or from a
    folder) or a file made too long, naming the offending edge or file; and must take a new
    file in shim/patch/ for the module patch."""
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        copy = os.path.join(tmp, 'shim')
        shutil.copytree(shim, copy, ignore=shutil.ignore_patterns('model'))
        base = set(check(copy))

        def added(path, text):
            with open(os.path.join(copy, path), 'a') as fh:
                fh.write(text)
            return set(check(copy)) - base

        new = added('patch/aarch64.cc', '#include "patch.h"\n#include "internal.h"\n#include "../state.h"\n')
        if new:
            failures.append('patch/aarch64.cc was not taken for the module patch: %s' % new)
        # Inside the folder: maps.cc -> x86_64_plan.h closes patch/maps -> patch/x86_64_plan
        # -> patch/arena -> patch/maps.
        new = added('patch/maps.cc', '#include "x86_64_plan.h"\n')
        if not any(p.startswith('include cycle: patch/maps -> patch/x86_64_plan') and
                   'patch/maps.cc: #include "x86_64_plan.h"' in p for p in new):
            failures.append('a cycle inside shim/patch/ through maps.cc -> x86_64_plan.h passed: %s' % new)
        base |= new
        new = added('patch/arena.cc', '#include "../runtime.h"\n')
        if not any(p.startswith('upward include: patch/arena.cc: #include "../runtime.h"') for p in new):
            failures.append('an upward include patch/arena.cc -> runtime.h passed: %s' % new)
        base |= new
        # park.cc -> gilwait.h closes a cycle within layer 2 (gilwait.cc includes park.h);
        # run as a program, the check must exit non-zero and name the edge.
        new = added('park.cc', '#include "gilwait.h"\n')
        out = subprocess.run([sys.executable, os.path.abspath(__file__), copy],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             universal_newlines=True)
        if out.returncode == 0 or not any('include cycle' in p and 'park.cc: #include "gilwait.h"' in p
                                          for p in out.stdout.splitlines()):
            failures.append('a cycle through park.cc -> gilwait.h passed:\n' + out.stdout)
        base |= new
        new = added('state.h', '#include "runtime.h"\n')
        if not any(p.startswith('upward include: state.h: #include "runtime.h"') for p in new):
            failures.append('an upward include state.h -> runtime.h passed')
        base |= new
        new = added('config.cc', '//\n' * (MAX_LINES + 1))
        if not any(p.startswith('config.cc:') for p in new):
            failures.append('a file over %d lines passed' % MAX_LINES)

    # The design document: current as it is; a layer table or a Pieces row that disagrees
    # with LAYERS fails.
    doc = os.path.join(shim, '..', 'docs', 'design.md')
    if os.path.exists(doc):
        with open(doc, encoding='utf-8') as fh:
            text = fh.read()
        if doc_problems(doc):
            failures.append('docs/design.md disagrees with LAYERS: %s' % doc_problems(doc))
        with tempfile.TemporaryDirectory() as tmp:
            for what, old, new in (
                    ('a module moved in the layer table', '| 3 | `runtime` |', '| 2 | `runtime` |'),
                    ('a Pieces row with the wrong layer', '| 3 | `shim/runtime.{h,cc}` |',
                     '| 2 | `shim/runtime.{h,cc}` |')):
                bad = os.path.join(tmp, 'design.md')
                with open(bad, 'w', encoding='utf-8') as fh:
                    fh.write(text.replace(old, new))
                if old not in text or not doc_problems(bad):
                    failures.append('%s passed the document check' % what)
    else:
        failures.append('no %s to check' % doc)

    for f in failures:
        print('self-test: FAIL: ' + f)
    if not failures:
        print('self-test: ok: a cycle (between modules and inside a folder), an upward include '
              '(from a file and from a folder), a long file and a stale design.md layer table are caught')
    return 1 if failures else 0


def main(argv):
    selftest = '--self-test' in argv
    args = [a for a in argv if a != '--self-test']
    doc = None
    for opt in ('--doc', '--write-doc'):
        if opt in args:
            i = args.index(opt)
            doc = args[i + 1]
            del args[i:i + 2]
            if opt == '--write-doc':
                return write_doc(doc)
    shim = args[0] if args else os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'shim')
    if selftest:
        return self_test(shim)
    problems = check(shim) + (doc_problems(doc) if doc else [])
    for p in problems:
        print(p)
    if not problems:
        print('layers ok: no include cycle, no upward include, no file over %d lines%s' %
              (MAX_LINES, ', %s agrees' % os.path.basename(doc) if doc else ''))
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
