#!/usr/bin/env python3
"""The shim's layers, checked: no include cycle between modules, no include of a higher
layer from a lower one, no file over 450 lines (issue 13; docs/design.md, "Layers").

    check_layers.py [SHIM_DIR]            check (default: the shim/ next to tests/)
    check_layers.py --self-test [SHIM_DIR] show that a back-edge fails the check

A module is a file's name without its extension (window.h and window.cc are "window");
every shim/patch_*.{h,cc} and patch.h are the one module "patch", and intercepted.def
belongs to "interpose". An edge is a `#include "..."` of another module's file. Includes
within a layer are allowed as long as they form no cycle.
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


def module_of(name):
    base = os.path.basename(name)
    if base == 'patch.h' or base.startswith('patch_'):
        return 'patch'
    if base == 'intercepted.def':
        return 'interpose'
    return SOURCE.sub('', base)


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
    files = sorted(f for f in os.listdir(shim) if SOURCE.search(f))
    for f in files:
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
            if not os.path.exists(os.path.join(shim, inc)) or '/' in inc:
                continue  # outside shim/ (../include/pyfinguard.h)
            dst = module_of(inc)
            if dst == src:
                continue
            edges.setdefault((src, dst), '%s: #include "%s"' % (f, inc))
            if dst in LAYERS and LAYERS[dst] > LAYERS[src]:
                problems.append('upward include: %s (%s, layer %d -> %s, layer %d)' %
                                (edges[(src, dst)], src, LAYERS[src], dst, LAYERS[dst]))
    # Cycles between modules (within a layer too): every edge a -> b from which a can be
    # reached again, printed with the path that closes it.
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
    """The check must fail on a copy of shim/ with a back-edge added (a cycle, an upward
    include) or a file made too long, naming the offending edge or file; and must take a
    new patch_*.cc for the module patch."""
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        copy = os.path.join(tmp, 'shim')
        shutil.copytree(shim, copy, ignore=shutil.ignore_patterns('model'))
        base = set(check(copy))

        def added(path, text):
            with open(os.path.join(copy, path), 'a') as fh:
                fh.write(text)
            return set(check(copy)) - base

        new = added('patch_aarch64.cc', '#include "patch.h"\n#include "state.h"\n')
        if new:
            failures.append('patch_aarch64.cc was not taken for the module patch: %s' % new)
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
        print('self-test: ok: a cycle, an upward include and a long file are caught')
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
