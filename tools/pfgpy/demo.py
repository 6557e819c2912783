"""`pyfinguard demo`: the live scenario (pfgpy.live) on every interpreter of this machine
(or of a sysroot: --sysroot, its programs cross-built and run under qemu-user), without
and with the guard, built and run by the scenario runner the test matrix uses
(pfgpy.scenario), as a table. tools/pyfinguard finds the library and calls main().
"""
import concurrent.futures
import shlex
import sys

from . import build, interpreters, live


def display_name(it):
    return it.name + (" (embedder)" if it.kind == "embed-only" else "")


def main(args, lib, out=sys.stdout):
    out.write("pyfinguard demo: %s\n" % live.LIVE_SCENARIO)
    out.write("  python -c %s (embedders: tools/pfgpy/c/late_ensure.c, own status %d),\n"
              "  without and with LD_PRELOAD=%s\n\n" % (shlex.quote(live.LIVE_CODE),
                                                        live.EMBED_STATUS, lib))
    out.flush()
    sysroot = getattr(args, "sysroot", None)
    if sysroot:
        out.write("  interpreters of the sysroot %s, run under qemu-user\n\n" % sysroot)
        out.flush()
    its = interpreters.discover(sysroot=sysroot)
    if args.python:
        want = set(args.python)
        its = [i for i in its if i.name in want or i.executable in want or
               i.version_str in want]
        if not its:
            return live.die(live.EXIT_USAGE, "no discovered interpreter matches %s (see "
                            "`python3 tools/pfgpy/interpreters.py`)" % ", ".join(args.python))

    def one(it):
        """(interpreter, without, with, ok): ok None when skipped."""
        if it.skip:
            return it, "skipped", it.skip, None
        try:
            # A libpython without an executable (Debian's libpython3.11.so for embedders):
            # the same thread in a C embedding program that exits 7.
            argv, extra, expect = live.prepare(it)
        except build.Unsupported as e:
            return it, "skipped", str(e), None
        except (build.BuildError, OSError) as e:
            return it, "build failed", str(e).strip().splitlines()[0][:100], "build"
        a = live.run(argv, None, extra, timeout=args.timeout)
        b = live.run(argv, lib, extra, timeout=args.timeout)
        ok = b.status == expect and not b.timed_out and b.stopped >= 1
        return it, a.text(), b.text() + ("" if ok else "  <- FAILED"), ok

    jobs = max(1, min(args.jobs, len(its)))
    with concurrent.futures.ThreadPoolExecutor(jobs) as ex:
        rows = list(ex.map(one, its))
    w0 = max([len("interpreter")] + [len(display_name(r[0])) for r in rows])
    w1 = max([len("without guard")] + [len(r[1]) for r in rows])
    fmt = "%%-%ds | %%-%ds | %%s\n" % (w0, w1)
    out.write(fmt % ("interpreter", "without guard", "with guard"))
    out.write("%s-+-%s-+-%s\n" % ("-" * w0, "-" * w1, "-" * 24))
    for it, a, b, ok in rows:
        out.write(fmt % (display_name(it), a, b))
    failed = sum(1 for r in rows if r[3] is False)
    clean = sum(1 for r in rows if r[3] is True)
    unbuilt = sum(1 for r in rows if r[3] == "build")
    skipped = sum(1 for r in rows if r[3] is None)
    out.write("\n%d interpreter(s) run, %d clean with the guard, %d skipped%s\n" %
              (clean + failed, clean, skipped,
               ", %d could not be built" % unbuilt if unbuilt else ""))
    if failed:
        return live.EXIT_FAIL
    if unbuilt or clean == 0:
        return live.EXIT_CANNOT_CHECK
    return live.EXIT_OK
