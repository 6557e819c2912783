#!/usr/bin/env python3
"""Entry-patcher corpus test: every exported function of every interpreter on the machine.

For each Python image found at run time:
  * a shared libpython (pyenv 3.6+ builds, Debian's libpython3.X.so.1.0): corpus_host
    dlopen()s it, patches every exported FUNC symbol (libpfgcorpus.so), then embeds it:
    known-result C API calls through the patched entries, 1000 GIL round trips, a script
    with threads, finalization;
  * a static interpreter executable exporting the C API (Debian's /usr/bin/python3.X): the
    real executable runs the script with libpfgcorpus.so preloaded, whose constructor
    patches every exported function of the executable before main(); the pyenv
    executables run the same way (their libpython is what gets patched).
Each is run twice, unpatched (PFG_CORPUS_PATCH=0, same process layout otherwise) and
patched; the outputs must be identical, check() and install() must agree on every
function, and the functions the guard needs must all be patched.

With --callsite-regs TOOL --control LIB it also checks, for each image, that no direct
caller of a guarded function relies on a call-clobbered register surviving the call
(GCC -fipa-ra; a hook would clobber it), after checking that the tool does flag LIB, a
library built so that its caller does rely on one.

With --expect-broken (used with a patcher built with -DPFG_PATCH_MUTANT_NO_DISP_FIXUP,
which skips the RIP-relative displacement fix-up) it passes only if every image's patched
run fails while its unpatched run works: proof that the corpus test can fail.

Usage: test_patch_corpus.py LIBPFGCORPUS CORPUS_HOST SCRIPT [--only SUBSTRING]
                            [--callsite-regs TOOL --control LIB] [--expect-broken]
Prints a table and ends with "N passed, N failed"; exit status 1 on any failure.
"""
import glob
import json
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "tools"))
from pfgpy import env as scrub  # noqa: E402

TIMEOUT = 300

# The guard's functions, as callsite_regs wants them: ':void' ones return nothing (so a
# read of rax after the call is a read of a leftover), ':noreturn' ones are not followed.
GUARDED = ["PyEval_SaveThread", "PyEval_RestoreThread:void", "PyEval_AcquireThread:void",
           "PyEval_AcquireLock:void", "PyGILState_Ensure", "PyGILState_Release:void",
           "Py_FinalizeEx", "Py_Finalize:void", "Py_Exit:noreturn", "Py_Initialize:void",
           "Py_InitializeEx:void", "Py_InitializeFromConfig", "Py_Main", "Py_BytesMain",
           "Py_RunMain"]


def readelf(args, path):
    try:
        return subprocess.run(["readelf"] + args + [path], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, universal_newlines=True,
                              timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""


def version_of(name):
    m = re.search(r"(\d+)\.(\d+)", name)
    return (int(m.group(1)), int(m.group(2))) if m else None


def discover():
    """[(label, kind, path, env)] and [(label, reason)] for skipped ones."""
    found, skipped = [], []
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    for prefix in sorted(glob.glob(os.path.join(root, "versions", "*")), key=lambda p: version_of(os.path.basename(p)) or (0, 0)):
        name = os.path.basename(prefix)
        v = version_of(name)
        if v is None:
            continue
        label = "pyenv " + name
        if v < (3, 6):
            skipped.append((label, "skipped: <3.6 unsupported"))
            continue
        libs = sorted(glob.glob(os.path.join(prefix, "lib", "libpython%d.%d*.so.1.0" % v)))
        if not libs:
            skipped.append((label, "skipped: no shared libpython (not --enable-shared)"))
            continue
        found.append((label, "lib", libs[0], {"PYTHONHOME": prefix}))
        # and its own executable with the corpus preloaded: patched before main(), then
        # Py_BytesMain / Py_Main and everything after run through the patches
        exe = os.path.join(prefix, "bin", "python%d.%d" % v)
        if os.access(exe, os.X_OK):
            found.append((label + " exe", "exe", exe, {}))
    for lib in sorted(glob.glob("/usr/lib/*-linux-gnu/libpython3.*.so.1.0")):
        found.append(("debian " + os.path.basename(lib), "lib", lib, {}))
    seen = set()
    for exe in sorted(glob.glob("/usr/bin/python3.*")):
        if not re.fullmatch(r".*/python3\.\d+", exe):
            continue
        real = os.path.realpath(exe)
        if real in seen or not os.access(real, os.X_OK):
            continue
        seen.add(real)
        needed = readelf(["-dW"], real)
        if "libpython" in needed:
            continue  # dynamically linked: its libpython is covered above
        if not re.search(r"\bPy_Initialize\b", readelf(["--dyn-syms", "-W"], real)):
            skipped.append(("debian " + exe, "skipped: does not export the C API"))
            continue
        found.append(("debian " + exe + " (static)", "exe", real, {}))
    return found, skipped


def text(b):
    return (b or b"").decode("utf-8", "replace")


def run_one(kind, path, extra_env, patched, corpus_lib, host, script, out_json):
    # Nothing of the caller's Python settings, preloads or corpus knobs (PFG_CORPUS_*).
    env = scrub.scrubbed(python="all", drop=[k for k in os.environ if k.startswith("PFG_")],
                         set=extra_env)
    env["PFG_CORPUS_PATCH"] = "1" if patched else "0"
    env["PFG_CORPUS_OUT"] = out_json
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if kind == "lib":
        cmd = [host, path, script]
    else:
        env["LD_PRELOAD"] = corpus_lib
        env["PFG_CORPUS_PRELOAD"] = "1"
        cmd = [path, "-I", script]
    try:
        p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=TIMEOUT)
        rc = p.returncode if p.returncode >= 0 else "signal %d" % -p.returncode
        return rc, text(p.stdout), text(p.stderr)
    except subprocess.TimeoutExpired as e:
        return "timeout", text(e.stdout), text(e.stderr)


def main():
    args = sys.argv[1:]
    opts = {}
    expect_broken = "--expect-broken" in args
    if expect_broken:
        args.remove("--expect-broken")
    for flag in ("--only", "--callsite-regs", "--control"):
        if flag in args:
            i = args.index(flag)
            opts[flag] = args[i + 1]
            del args[i:i + 2]
    only = opts.get("--only")
    tool = opts.get("--callsite-regs")
    control = opts.get("--control")
    if len(args) != 3:
        print(__doc__)
        return 2
    corpus_lib, host, script = (os.path.abspath(a) for a in args)
    found, skipped = discover()
    if only:
        found = [f for f in found if only in f[0]]
    passed = failed = 0
    rows = []
    regs_rows = []
    if tool:
        p = subprocess.run([tool, control, "pfg_ctl_callee"], stdout=subprocess.PIPE)
        ctl = text(p.stdout).strip()
        ok = p.returncode == 1 and " 1 read a call-clobbered" in ctl
        regs_rows.append(("control " + os.path.basename(control), ctl, ok))
        passed += ok
        failed += not ok
    tmp = tempfile.mkdtemp(prefix="pfg-corpus-")
    for label, kind, path, env in found:
        problems = []
        out_json = os.path.join(tmp, re.sub(r"\W+", "_", label) + ".json")
        rc0, out0, err0 = run_one(kind, path, env, False, corpus_lib, host, script, out_json + ".base")
        rc1, out1, err1 = run_one(kind, path, env, True, corpus_lib, host, script, out_json)
        if rc0 != 0:
            problems.append("unpatched run failed (%s): %s" % (rc0, err0.strip()[-300:]))
        if rc1 != 0:
            problems.append("patched run failed (%s): %s" % (rc1, err1.strip()[-300:]))
        if rc0 == 0 and rc1 == 0 and out0 != out1:
            problems.append("output differs:\n  unpatched: %r\n  patched:   %r" % (out0, out1))
        if rc1 == 0 and "SCRIPT " not in out1:
            problems.append("the script did not print its result")
        rep = None
        try:
            with open(out_json) as f:
                rep = json.load(f)
        except (OSError, ValueError) as e:
            problems.append("no report: %s" % e)
        if rep:
            if rep["disagree"]:
                problems.append("check() and install() disagree on %d functions, e.g. %s"
                                % (rep["disagree"], rep["disagree_example"]))
            if rep["patched"] + rep["refused"] != rep["functions"]:
                problems.append("patched + refused != functions")
            for fn, st in sorted(rep["must"].items()):
                if st not in ("patched", "absent"):
                    problems.append("%s NOT patchable: %s" % (fn, st))
            if not rep["calls"].get("PyEval_SaveThread"):
                problems.append("PyEval_SaveThread was never called through its patch")
            if rep["calls_through_patches"] <= 0:
                problems.append("no call went through a patch")
        if rep and kind == "exe":
            # patched before main(): the interpreter's main entry ran through its patch
            # (3.8+: Py_BytesMain; 3.7: _Py_UnixMain; 3.6: Py_Main)
            main_fn = next((f for f in ("Py_BytesMain", "_Py_UnixMain", "Py_Main") if f in rep["calls"]), "Py_Main")
            if not rep["calls"].get(main_fn):
                problems.append("%s was not called through its patch (patched too late?)" % main_fn)
        if tool and not label.endswith(" exe"):  # a pyenv exe's image is its libpython, done above
            p = subprocess.run([tool, path] + GUARDED, stdout=subprocess.PIPE)
            out = text(p.stdout)
            relying = [l for l in out.splitlines() if "direct call sites" in l and " 0 read" not in l]
            sites = sum(int(m) for m in re.findall(r"(\d+) direct call sites", out))
            summary = "%d direct call sites of guarded functions, %d rely on a call-clobbered register" % (
                sites, len(relying))
            if p.returncode not in (0, 1) or relying:
                problems.append("callers rely on call-clobbered registers (hooks would break them):\n    "
                                + "\n    ".join(relying or [out.strip()]))
            regs_rows.append((label, summary, not relying and p.returncode in (0, 1)))
        ok = not problems
        passed += ok
        failed += not ok
        rows.append((label, rep, ok, problems))

    print("Entry-patcher corpus (tests/unit/test_patch_corpus.py): every exported function patched")
    print()
    print("| image | functions | patched | refused | called through patch | guard functions | run |")
    print("|---|---:|---:|---:|---:|---|---|")
    for label, rep, ok, _ in rows:
        if rep:
            must = rep["must"]
            absent = [k for k, v in must.items() if v == "absent"]
            npatched = sum(1 for v in must.values() if v == "patched")
            mtxt = "%d/%d patched" % (npatched, len(must) - len(absent))
            if absent:
                mtxt += " (absent: %s)" % ", ".join(sorted(absent))
            print("| %s | %d | %d | %d | %d (%d calls) | %s | %s |" % (
                label, rep["functions"], rep["patched"], rep["refused"], rep["called_patched"],
                rep["calls_through_patches"], mtxt, "same output" if ok else "FAIL"))
        else:
            print("| %s | - | - | - | - | - | FAIL |" % label)
    for label, reason in skipped:
        print("| %s | | | | | | %s |" % (label, reason))
    print()
    print("Refusals by reason (offsets and sizes folded to N):")
    agg = {}
    for label, rep, _, _ in rows:
        for r in (rep or {}).get("reasons", []):
            a = agg.setdefault(r["reason"], [0, r["example"], set()])
            a[0] += r["count"]
            a[2].add(label.split()[1] if label.startswith("pyenv") else "debian")
    for reason, (count, example, where) in sorted(agg.items(), key=lambda kv: -kv[1][0]):
        print("  %5d  %s   e.g. %s" % (count, reason, example))
    if regs_rows:
        print()
        print("Callers of the guarded functions vs call-clobbered registers (callsite_regs):")
        for label, summary, ok in regs_rows:
            print("  %-40s %s  %s" % (label, summary, "ok" if ok else "FAIL"))
    for label, rep, ok, problems in rows:
        if not ok:
            print()
            print("FAIL %s:" % label)
            for p in problems:
                print("  " + p)
    if expect_broken:
        # The mutation check: a patcher built broken must make every patched run fail
        # while the unpatched runs (same binaries, PFG_CORPUS_PATCH=0) still work.
        caught = sum(1 for _, _, ok, problems in rows
                     if not ok and any(p.startswith(("patched run failed", "output differs")) for p in problems)
                     and not any(p.startswith("unpatched run failed") for p in problems))
        print()
        print("mutant: %d of %d images caught the broken patcher" % (caught, len(rows)))
        ok = rows and caught == len(rows)
        print("%d passed, %d failed" % (1 if ok else 0, 0 if ok else 1))
        return 0 if ok else 1
    print()
    print("%d passed, %d failed, %d skipped" % (passed, failed, len(skipped)))
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
