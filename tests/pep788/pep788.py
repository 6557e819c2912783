#!/usr/bin/env python3
"""PEP 788 through <pyfinguard/pep788.h> (docs/pep788.md; README.md here).

On every interpreter found (tools/pfgpy/interpreters.py), the embedder pep788_embed.c and
the extension pep788ext.c run each mode with the guard preloaded and without it. With the
guard every mode must give EXPECTED -- the lines CPython 3.15 gives natively with its own
PEP 788 (checked by --native, run inside the Debian unstable chroot by this script when
tools/sid-env has one; and there too on python3.13/3.14 with the guard built in build-sid/,
when tools/sid-env build made it; and in the Debian 13 chroot on its python3.13 with the
guard built in build-trixie/). Without the guard the fallback must do what docs/pep788.md says:
the same answers after finalization (`late`), an old view accepted (`reinit`); its race
(`wait`: a held guard is not waited for) is printed, not asserted, since CPython decides
what the late thread meets.

    /usr/bin/python3 tests/pep788/pep788.py --lib build/shim/libpyfinguard.so
    /usr/bin/python3 tests/pep788/pep788.py --native     # inside the sid chroot: 3.15

Status 1 if any FAIL.
"""
import argparse
import os
import subprocess
import sys
import sysconfig

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tools"))
from pfgpy import build, env, interpreters, run  # noqa: E402

INCLUDE = "-I" + os.path.join(REPO, "include")
TIMEOUT = 20

# The lines each mode must print (in this order, other lines ignored), and exit 0.
EXPECTED = {
    "wait": ["HOLDER python ran", "FINALIZE rc=0 holder_ran_before=1 holder_closed_before=1",
             "JOINED"],
    "late": ["LATE guard NULL", "LATE ensure NULL", "LATE view_main made",
             "LATE guard_from_main_view NULL"],
    "storm": ["FINALIZE rc=0", "STORM threads_that_entered=4 backed_out=4"],
    # Without the pause: the guard refuses new guards from Py_FinalizeEx's entry on.
    "storm-tight": ["FINALIZE rc=0", "STORM threads_that_entered=4 backed_out=4"],
    "subinterp": ["SUB ensure made", "SUB python ran", "SUB after_end guard NULL",
                  "SUB finalize rc=0"],
    "reinit": ["OLD_VIEW refused", "REINIT finalize rc=0"],
    "ext-hold": ["EXT callback ran"],
    # The poller backs out once the exit begins; whether it prints that before the
    # process is gone is up to the scheduler: a clean exit is what is asserted.
    "ext-poll": ["MAIN exits"],
    # Where the finalization waits: pyfinguard at Py_FinalizeEx's entry, before
    # threading._shutdown() and the atexit callbacks (docs/pep788.md, "Where the
    # finalization waits"); the guard's callback runs first.
    "ext-order": ["MAIN exits", "GUARD callback", "ATEXIT"],
}
# CPython 3.15.2 keeps a view as an interpreter id: the main interpreter of a new runtime
# has the same id, so a view of the earlier runtime is accepted (measured with --native).
NATIVE_315 = dict(EXPECTED, reinit=["OLD_VIEW accepted", "REINIT finalize rc=0"],
                  # 3.15.2 waits for guards after the atexit callbacks (measured).
                  **{"ext-order": ["MAIN exits", "ATEXIT", "GUARD callback"]})
# Without the guard (docs/pep788.md, "Without the guard"): asserted modes only.
FALLBACK = {
    "late": EXPECTED["late"],
    "reinit": ["OLD_VIEW accepted", "REINIT finalize rc=0"],
    # An ended sub-interpreter is not recognised without the guard (the guard made from
    # the view is never used to enter here).
    "subinterp": ["SUB ensure made", "SUB python ran", "SUB after_end guard made",
                  "SUB finalize rc=0"],
}
EXT_SCRIPTS = {
    "ext-hold": "import pep788ext\n"
                "pep788ext.hold(300, lambda: print('EXT callback ran', flush=True))\n",
    "ext-poll": "import pep788ext, time\n"
                "pep788ext.poll(0, lambda: None)\ntime.sleep(0.05)\n"
                "print('MAIN exits', flush=True)\n",
    "ext-order": "import atexit, pep788ext\n"
                 "atexit.register(lambda: print('ATEXIT', flush=True))\n"
                 "pep788ext.hold(300, lambda: print('GUARD callback', flush=True))\n"
                 "print('MAIN exits', flush=True)\n",
}
EMBED_MODES = ["wait", "late", "storm", "storm-tight", "subinterp", "reinit"]


def check(name, mode, side, r, expected):
    lines = [l.strip() for l in r.stdout.splitlines()]
    it = iter(lines)
    ok = not r.timed_out and r.status == 0 and all(any(l == e for l in it) for e in expected)
    print("%s %-28s %-8s %-8s %s" % ("PASS" if ok else "FAIL", name, mode, side, r.describe()))
    if not ok:
        print("    expected %r\n    stdout %r\n    stderr %r" % (expected, r.stdout[-600:], r.stderr[-600:]))
    return ok


def show(name, mode, side, r):
    print("INFO %-28s %-8s %-8s %s (not asserted: docs/pep788.md, the fallback's race)" % (
        name, mode, side, r.describe()))


def run_modes(name, embed, extdir, python, lib, expected_guarded):
    ok = True
    sides = [("guard", lib, expected_guarded), ("none", None, FALLBACK)] if lib else \
        [("native", None, expected_guarded)]
    for side, pre, expected in sides:
        e = env.scrubbed(preload=pre)
        for mode in EMBED_MODES if embed else []:
            if side == "none" and mode.startswith("storm"):
                continue  # the fallback's race may crash here: not run (docs/pep788.md)
            if side == "native" and mode == "storm-tight":
                continue  # run apart by native(): 3.15.2 does not exit

            r = run.run([embed, mode], env=e, timeout=TIMEOUT)
            if mode in expected:
                ok &= check(name, mode, side, r, expected[mode])
            else:
                show(name, mode, side, r)
        for mode, script in EXT_SCRIPTS.items() if extdir and python else []:
            e2 = dict(e, PYTHONPATH=extdir)
            r = run.run([python, "-c", script], env=e2, timeout=TIMEOUT)
            if mode in expected:
                ok &= check(name, mode, side, r, expected[mode])
            else:
                show(name, mode, side, r)
    return ok


def native(build_dir):
    """Inside the sid chroot: python3.15's own PEP 788, compiled with its python3.15-config."""
    ok = True
    v = "3.15"
    exe = "/usr/bin/python" + v
    if not os.path.exists(exe):
        print("SKIP native %s: %s not installed" % (v, exe))
        return True
    out = os.path.join(build_dir, "native")
    os.makedirs(out, exist_ok=True)
    q = lambda code: subprocess.check_output([exe, "-c", code], universal_newlines=True).strip()
    inc = q("import sysconfig; print(sysconfig.get_paths()['include'])")
    suffix = q("import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))")
    ld = subprocess.check_output(["python%s-config" % v, "--embed", "--ldflags"],
                                 universal_newlines=True).split()
    embed = os.path.join(out, "pep788_embed")
    subprocess.check_call(["cc", "-O1", "-g", "-pthread", INCLUDE, "-I" + inc,
                           os.path.join(HERE, "pep788_embed.c"), "-o", embed] + ld)
    subprocess.check_call(["cc", "-O1", "-g", "-pthread", "-fPIC", "-shared", INCLUDE, "-I" + inc,
                           os.path.join(HERE, "pep788ext.c"), "-o",
                           os.path.join(out, "pep788ext" + suffix)])
    r = run.run([embed, "backend"], timeout=TIMEOUT)
    ok &= check("sid-python3.15 (native)", "backend", "native", r, ["BACKEND 1"])
    ok &= run_modes("sid-python3.15 (native)", embed, out, exe, None, NATIVE_315)
    # Threads that always hold a guard between them: 3.15.2 accepts new guards while its
    # finalization waits (docs/pep788.md). Printed, not asserted; 5 s at most.
    r = run.run([embed, "storm-tight"], timeout=5)
    print("INFO %-28s %-8s %-8s %s" % ("sid-python3.15 (native)", "storm-tight", "native", r.describe()))
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lib", help="libpyfinguard.so")
    ap.add_argument("--build-dir", default=os.path.join(REPO, "build", "pep788-cache"))
    ap.add_argument("--native", action="store_true", help="run CPython 3.15's own (in the sid chroot)")
    ap.add_argument("--sid", action="store_true", help="also run --native in tools/sid-env's chroot")
    a = ap.parse_args()
    if a.native:
        return 0 if native(a.build_dir) else 1
    lib = os.path.abspath(a.lib)
    run.no_core()   # the fallback's runs may crash (docs/pep788.md): no core files
    ok = True
    for it in interpreters.discover():
        if it.skip:
            print("SKIP %s: %s" % (it.name, it.skip))
            continue
        if it.version >= (3, 15):
            print("SKIP %s: 3.15+ is CPython's own PEP 788 (--native)" % it.name)
            continue
        embed = extdir = None
        try:
            if it.can_embed:
                embed = build.build_embed(it, [os.path.join(HERE, "pep788_embed.c")],
                                          build_dir=a.build_dir, extra_cflags=[INCLUDE])
            if it.can_run_programs:
                extdir = build.build_extension(it, "pep788ext", [os.path.join(HERE, "pep788ext.c")],
                                               build_dir=a.build_dir, extra_cflags=[INCLUDE])
        except build.Unsupported as e:
            print("SKIP %s: %s" % (it.name, e))
            continue
        if not embed and not extdir:
            print("SKIP %s: neither embeddable nor runnable" % it.name)
            continue
        r = run.run([embed, "backend"], env=env.scrubbed(preload=lib), timeout=TIMEOUT) if embed else None
        if r is not None:
            ok &= check(it.name, "backend", "guard", r, ["BACKEND 2"])
        ok &= run_modes(it.name, embed, extdir, it.executable if it.can_run_programs else None,
                        lib, EXPECTED)
    if a.sid:
        sid = os.path.join(REPO, "tools", "sid-env")
        p = subprocess.run([sid, "path"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        if os.geteuid() != 0:
            print("SKIP sid-python3.15 (native): tools/sid-env run needs root")
        elif p.returncode != 0:
            print("SKIP sid-python3.15 (native): no sid chroot (tools/sid-env create)")
        else:
            rc = subprocess.call([sid, "run", "/usr/bin/python3", os.path.abspath(__file__),
                                  "--native", "--build-dir", os.path.join(a.build_dir, "sid")])
            ok &= rc == 0
            # The chroot's python3.13/3.14 with the guard as built there (tools/sid-env
            # build, which the sid suite runs; not run here: minutes when cold).
            sid_lib = os.path.join(REPO, "build-sid", "shim", "libpyfinguard.so")
            if os.path.exists(sid_lib):
                rc = subprocess.call([sid, "run", "/usr/bin/python3", os.path.abspath(__file__),
                                      "--lib", sid_lib, "--build-dir",
                                      os.path.join(a.build_dir, "sid-guard")])
                ok &= rc == 0
            else:
                print("SKIP sid python3.13/3.14 with the guard: no build-sid/ (tools/sid-env build)")
    if a.sid:
        # Debian 13's python3.13 (3.13.5) and libpython3.13 with the guard as built in its
        # chroot (tools/debian-env trixie build, which the trixie suite runs).
        denv = os.path.join(REPO, "tools", "debian-env")
        trixie_lib = os.path.join(REPO, "build-trixie", "shim", "libpyfinguard.so")
        p = subprocess.run([denv, "trixie", "path"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        if os.geteuid() != 0:
            print("SKIP trixie python3.13 with the guard: tools/debian-env run needs root")
        elif p.returncode != 0:
            print("SKIP trixie python3.13 with the guard: no trixie chroot (tools/debian-env trixie create)")
        elif not os.path.exists(trixie_lib):
            print("SKIP trixie python3.13 with the guard: no build-trixie/ (tools/debian-env trixie build)")
        else:
            rc = subprocess.call([denv, "trixie", "run", "/usr/bin/python3", os.path.abspath(__file__),
                                  "--lib", trixie_lib, "--build-dir",
                                  os.path.join(a.build_dir, "trixie-guard")])
            ok &= rc == 0
    print("pep788: %s" % ("ok" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
