#!/usr/bin/env python3
"""The shim's layers, checked: no include cycle between modules, no include of a higher
layer from a lower one, no file over 450 lines (issue 13; docs/design.md, "Layers").

    check_layers.py [SHIM_DIR]            check (default: the shim/ next to tests/)
    check_layers.py --self-test [SHIM_DIR] show that a back-edge fails the check

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

# The one place the layers are declared (docs/design.md mirrors it). Lower numbers are
# lower layers; a module may include only its own layer and those below.
LAYERS = {
    # 0: plain data and formatting, no policy
    'state': 0, 'writer': 0, 'config': 0, 'patch': 0,
    # 1: mechanics: resolving and patching functions, images, CPython's own flags, where
    #    reports go, the park record
    'interpose': 1, 'dlopen': 1, 'images': 1, 'probes': 1, 'sink': 1, 'parkrecord': 1,
    # 2: the mechanisms: windows and the drain, GIL waiters, ended thread states and
    #    interpreters, parking, reports
    'window': 2, 'gilwait': 2, 'lifecycle': 2, 'park': 2, 'report': 2, 'summary': 2,
    # 3: detection and take-over of a runtime, pyfinguard_describe()
    'runtime': 3,
    # 4: the policy on top: the hooks and the preload entry
    'hooks': 4, 'libc_hooks': 4, 'preload': 4,
}
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

    for f in failures:
        print('self-test: FAIL: ' + f)
    if not failures:
        print('self-test: ok: a cycle (between modules and inside a folder), an upward include '
              '(from a file and from a folder) and a long file are caught')
    return 1 if failures else 0


def main(argv):
    selftest = '--self-test' in argv
    args = [a for a in argv if a != '--self-test']
    shim = args[0] if args else os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'shim')
    if selftest:
        return self_test(shim)
    problems = check(shim)
    for p in problems:
        print(p)
    if not problems:
        print('layers ok: no include cycle, no upward include, no file over %d lines' % MAX_LINES)
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
