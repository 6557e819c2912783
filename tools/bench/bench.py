#!/usr/bin/python3
"""pyfinguard benchmark: the guard's cost on the GIL hot path and at start-up.

    /usr/bin/python3 tools/bench/bench.py [--quick] [--interp SUBSTR] [--lib PATH] [--json FILE]

Four measurements, one table each (docs/performance.md explains method and caveats):

  1. pair time     ns per PyEval_SaveThread/PyEval_RestoreThread pair in an embedding
                   program (tools/bench/pair.c), rounds of (no guard, guard) processes
                   interleaved in one invocation, all pinned to one CPU; medians and the
                   median of the per-round ratios. Target (docs/performance.md):
                   ratio <= 1.03.
  1b. pair A/B    the same pair in ONE process, alternating loops through libpython's own
                   definitions and through the preloaded wrapper (pair.c mode ab:LIB), for
                   the guard and for a do-nothing interposer; median over processes of
                   each process's median per-round ratio. Same GIL, same memory layout,
                   so far less noise than 1; only where the guard interposes.
  2. pair instr    instructions per pair with valgrind --tool=callgrind (deterministic):
                   totals for two loop lengths, differenced, divided by the difference of
                   the pair counts. Without the guard, with a do-nothing interposer
                   (tools/bench/null_hop.c: the floor of any LD_PRELOAD wrapper) and with
                   the guard.
  3. start-up      `python -c pass`: CPU time (interleaved runs, median of per-round
                   ratios) and callgrind instructions, without and with the guard; the time
                   also for an empty preloaded object and for the guard with
                   PYFINGUARD_PATCH=off, the floors the guard cannot go below. Targets:
                   <= 1.01 time where nothing is patched, <= 1.02 on static
                   executables, <= +0.5 % instructions. Also the static pythons of
                   the tools/debian-env chroots (Debian 13, unstable; root only;
                   --no-chroot skips them), with the library built there.
  3b. arm64       start-up instructions of the arm64 sysroots' static pythons under
                   qemu-user, counted from qemu's translated-block log (no times: they
                   would be the emulator's); build-arm64's library (--no-arm64 skips them,
                   --only startup-arm64 runs only these).
  4. (within 1 and 2) the pair against Debian's libpython3.11, whose definitions the guard
                   entry-patches: "plt" calls bind to the guard's exported wrapper, "direct"
                   calls enter libpython's own (patched) entry like CPython's internal calls.

It is a benchmark, not a test: it exits 0 whatever it measures (2 on a usage or build
error) and prints "TARGET MISSED" lines for the targets that were missed.
Runs with any Python 3.6+; meant for /usr/bin/python3.
"""
import argparse
import glob
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tools"))
from pfgpy import env, interpreters, library  # noqa: E402

PAIR_TARGET = 1.03          # the targets: docs/performance.md
# Start-up: where nothing needs patching (a libpython the guard interposes on) ...
START_TIME_TARGET = 1.01
# ... and on executables that define the C API themselves (entry-patched at load).
START_TIME_TARGET_STATIC = 1.02
START_INSTR_TARGET = 1.005
# Instructions the guard may add per pair: what a do-nothing interposer (hop) adds on
# this machine (docs/performance.md, "Designs and their floors" says why the guard does not
# reach it).
PAIR_INSTR_TARGET = 8.0

# Environment for every measured process (pfgpy.env): no inherited preload or Python
# settings, and a fixed hash seed so that instruction counts repeat exactly from run to run.
SCRUB = ("LD_LIBRARY_PATH", "PYTHONHASHSEED", "PYTHONMALLOC", "PYTHONDEVMODE",
         "PYTHONTRACEMALLOC")

missed = []


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def target_missed(text):
    line = "TARGET MISSED: " + text
    missed.append(line)
    print(line, flush=True)


def env_with(preload=None):
    return env.scrubbed(drop=SCRUB, preload=preload, set={"PYTHONHASHSEED": "0"})



# ---------------------------------------------------------------------------------------
# Interpreters

class Target(object):
    """What we measure: name, python executable (start-up), libpython (pair program)."""

    def __init__(self, name, kind, version, executable, include, libpython, libdir):
        self.name, self.kind, self.version = name, kind, version
        self.executable, self.include = executable, include
        self.libpython, self.libdir = libpython, libdir

    @property
    def can_embed(self):
        return bool(self.libpython and self.include and
                    os.path.isfile(os.path.join(self.include, "Python.h")))

    @property
    def can_run(self):
        return bool(self.executable) and self.kind != "embed-only"


def discover():
    """The interpreters tools/pfgpy/interpreters.py finds (the tests' own discovery); a
    skipped one is printed with its reason."""
    from pfgpy import interpreters
    out = []
    for i in interpreters.discover():
        if i.skip:
            print("%-32s skipped: %s" % (i.name, i.skip))
            continue
        out.append(Target(i.name, i.kind, i.version_str, i.executable, i.include,
                          i.libpython, i.libdir))
    return out, "tools/pfgpy/interpreters.py"


# ---------------------------------------------------------------------------------------
# Building

def build_dir():
    d = os.environ.get("PFG_BENCH_BUILD_DIR") or "/tmp/pfg-bench-%d" % os.getuid()
    os.makedirs(d, exist_ok=True)
    return d


def compile_cached(cmd_wo_out, sources, out):
    """Run cmd_wo_out + ['-o', out] unless out exists for the same sources and command."""
    h = hashlib.sha256(repr(cmd_wo_out).encode())
    for s in sources:
        with open(s, "rb") as f:
            h.update(f.read())
    stamp = out + ".key"
    key = h.hexdigest()
    if os.path.exists(out) and os.path.exists(stamp) and open(stamp).read() == key:
        return out
    tmp = out + ".tmp%d" % os.getpid()
    r = subprocess.run(cmd_wo_out + ["-o", tmp], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        raise RuntimeError("compile failed: %s\n%s" % (" ".join(cmd_wo_out), r.stdout.decode()))
    os.replace(tmp, out)
    with open(stamp, "w") as f:
        f.write(key)
    return out


def build_pair(t):
    src = os.path.join(HERE, "pair.c")
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", t.name).strip("_")
    d = os.path.join(build_dir(), slug)
    os.makedirs(d, exist_ok=True)
    # DT_RPATH (--disable-new-dtags): the libpython we name is the one that loads, even if
    # another one with the same soname (pyenv's and Debian's 3.11) is on a library path.
    cmd = [os.environ.get("CC", "cc"), "-O2", "-g", "-std=gnu11", "-I" + t.include, src,
           t.libpython, "-Wl,--disable-new-dtags", "-Wl,-rpath," + os.path.dirname(t.libpython),
           "-ldl"]
    return compile_cached(cmd, [src], os.path.join(d, "pair"))


def build_empty_preload():
    src = os.path.join(HERE, "empty_preload.c")
    cmd = [os.environ.get("CC", "cc"), "-O2", "-shared", "-fPIC", src]
    return compile_cached(cmd, [src], os.path.join(build_dir(), "empty_preload.so"))


def build_null_hop():
    src = os.path.join(HERE, "null_hop.c")
    cmd = [os.environ.get("CC", "cc"), "-O2", "-g", "-shared", "-fPIC", src, "-ldl"]
    return compile_cached(cmd, [src], os.path.join(build_dir(), "null_hop.so"))


def ensure_lib(path):
    """The guard library: --lib (must exist), else pfgpy.library's default
    (<repo>/build/shim/libpyfinguard.so), built with meson when missing."""
    if path:
        found = library.find(explicit=path)
        if not found:
            log("bench: %s does not exist" % path)
            sys.exit(2)
        return found
    found = library.find()
    if found:
        return found
    default = library.in_tree()
    bdir = os.path.join(REPO, "build")
    if not os.path.exists(os.path.join(bdir, "build.ninja")):
        log("bench: meson setup build")
        subprocess.check_call(["meson", "setup", bdir], cwd=REPO, stdout=sys.stderr)
    log("bench: meson compile -C build")
    subprocess.check_call(["meson", "compile", "-C", bdir], cwd=REPO, stdout=sys.stderr)
    return default


# ---------------------------------------------------------------------------------------
# Running

ALL_CPUS = None


def pin(cpu):
    """Pin this process (and so every child started afterwards) to one CPU, or unpin."""
    if not hasattr(os, "sched_setaffinity"):
        return
    os.sched_setaffinity(0, ALL_CPUS if cpu is None else {cpu})


def run_pair(exe, n, reps, mode, preload):
    r = subprocess.run([exe, str(n), str(reps), mode], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, env=env_with(preload), timeout=600)
    m = re.search(r"RESULT min=([\d.]+) median=[\d.]+ cpumin=([\d.]+)", r.stdout.decode())
    if r.returncode != 0 or not m:
        raise RuntimeError("%s %s %s failed (status %d): %s" % (
            exe, n, mode, r.returncode, r.stderr.decode(errors="replace")[-500:]))
    return float(m.group(2)), float(m.group(1))  # (thread CPU time, wall) ns/pair, minima


# How callgrind is started: the host's valgrind, or (inside a tools/debian-env chroot,
# which has none) a copy of it in the source tree that the chroot sees (--valgrind-dir).
VALGRIND = ["valgrind"]
VALGRIND_ENV = {}


def callgrind_total(argv, preload, env=None):
    """Instructions valgrind's callgrind collects for argv (all of it, start to exit)."""
    cmd = VALGRIND + ["--tool=callgrind", "--callgrind-out-file=/dev/null"] + argv
    e = dict(env if env is not None else env_with(preload), **VALGRIND_ENV)
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e, timeout=1800)
    m = re.search(r"Collected : (\d+)", r.stderr.decode(errors="replace"))
    if r.returncode != 0 or not m:
        raise RuntimeError("callgrind %s failed (status %d): %s" % (
            " ".join(argv), r.returncode, r.stderr.decode(errors="replace")[-800:]))
    return int(m.group(1))


def valgrind_copy():
    """A copy of this machine's valgrind (its launcher binary and its tool directory, whose
    tools are static executables) in <repo>/build-valgrind/, for the chroots: they mount
    the source tree at the same path and have no valgrind of their own. None (and a
    printed reason) when this machine has none."""
    exe = shutil.which("valgrind.bin") or shutil.which("valgrind")
    libdir = next((d for d in ("/usr/libexec/valgrind", "/usr/lib/x86_64-linux-gnu/valgrind")
                   if os.path.isfile(os.path.join(d, "callgrind-amd64-linux"))), None)
    if not exe or not libdir:
        print("chroot instructions: not measured (no valgrind with callgrind-amd64-linux here)")
        return None
    # Debian's /usr/bin/valgrind is a shell wrapper that sets LD_LIBRARY_PATH for the
    # measured program; valgrind.bin is the launcher itself.
    if open(exe, "rb").read(2) == b"#!" and os.path.exists(exe + ".bin"):
        exe = exe + ".bin"
    dest = os.path.join(REPO, "build-valgrind")
    stamp = os.path.join(dest, "source")
    key = "%s %d %s %d" % (exe, os.stat(exe).st_mtime, libdir, os.stat(libdir).st_mtime)
    if not (os.path.exists(stamp) and open(stamp).read() == key):
        shutil.rmtree(dest, ignore_errors=True)
        os.makedirs(dest)
        shutil.copy2(exe, os.path.join(dest, "valgrind"))
        shutil.copytree(libdir, os.path.join(dest, "lib"), symlinks=True)
        with open(stamp, "w") as f:
            f.write(key)
    return dest


def pairs_executed(n):
    return n + n // 10 + 1  # pair.c: warm-up of N/10+1, then N


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def fmt_ratio(x):
    return "%.3f" % x


def table(title, header, rows):
    print()
    print("== " + title)
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    line = "  ".join("%-*s" % (w, h) for w, h in zip(widths, header))
    print(line)
    print("-" * len(line))
    for r in rows:
        print("  ".join(("%-*s" if i == 0 else "%*s") % (w, c)
                        for i, (w, c) in enumerate(zip(widths, r))))
    sys.stdout.flush()


# ---------------------------------------------------------------------------------------
# Measurements

def pair_cases(targets, lib):
    """(label, pair exe, mode) per embeddable interpreter; plus the "direct" path where the
    guard reports an entry patch for the pair (Debian's libpython3.11)."""
    cases = []
    for t in targets:
        if not t.can_embed:
            continue
        try:
            exe = build_pair(t)
        except RuntimeError as e:
            print("%-32s pair skipped: %s" % (t.name, str(e).splitlines()[0]))
            continue
        r = subprocess.run([exe, "1", "1", "plt"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=dict(env_with(lib), PAIR_DESCRIBE="1"), timeout=120)
        cover = re.findall(r"describe: cover (\S+) (\S+)", r.stdout.decode())
        mech = "/".join(sorted(set(m for _, m in cover))) or "?"
        if mech == "entry-patch":
            # The program's PLT binds to the guard's wrapper, which calls the trampoline;
            # CPython's own calls enter the patched entry, which jumps to the wrapper.
            cases.append((t.name + " [plt: wrapper+trampoline]", exe, "plt", t))
            cases.append((t.name + " [direct: entry-patch]", exe, "direct:" + t.libpython, t))
        else:
            cases.append((t.name + " [plt: " + mech + "]", exe, "plt", t))
    return cases


def measure_pair_time(cases, lib, rounds, n, reps, cpu):
    pin(cpu)
    res = {c[0]: {"raw": [], "guard": [], "ratio": [], "wall_ratio": []} for c in cases}
    for rnd in range(rounds):
        log("bench: pair time round %d/%d" % (rnd + 1, rounds))
        for label, exe, mode, _ in cases:
            # Alternate which one goes first so that drift within a round cancels.
            order = [None, lib] if rnd % 2 == 0 else [lib, None]
            got = {}
            try:
                for pre in order:
                    got[pre] = run_pair(exe, n, reps, mode, pre)
            except (RuntimeError, subprocess.TimeoutExpired) as e:
                print("%s: round %d failed: %s" % (label, rnd + 1, str(e)[:300]))
                continue
            res[label]["raw"].append(got[None][0])
            res[label]["guard"].append(got[lib][0])
            res[label]["ratio"].append(got[lib][0] / got[None][0])
            res[label]["wall_ratio"].append(got[lib][1] / got[None][1])
    pin(None)
    rows, out = [], {}
    for label, _, _, _ in cases:
        r = res[label]
        if not r["ratio"]:
            rows.append([label, "failed", "-", "-", "-", "-"])
            continue
        raw, gd, ratio = median(r["raw"]), median(r["guard"]), median(r["ratio"])
        spread = "%.3f-%.3f" % (min(r["ratio"]), max(r["ratio"]))
        rows.append([label, "%.2f" % raw, "%.2f" % gd, fmt_ratio(ratio), spread,
                     fmt_ratio(median(r["wall_ratio"]))])
        out[label] = {"raw_ns": raw, "guard_ns": gd, "ratio": ratio,
                      "wall_ratio": median(r["wall_ratio"]), "rounds": r}
    table("1. ns per PyEval_SaveThread/RestoreThread pair: thread CPU time, min of %d loops of "
          "%d pairs per process; %d rounds x {no guard, guard} interleaved; pinned to CPU %s"
          % (reps, n, rounds, cpu),
          ["interpreter [path]", "raw ns", "guard ns", "median ratio", "ratio range",
           "wall-clock ratio"], rows)
    for label in out:
        if out[label]["ratio"] > PAIR_TARGET:
            target_missed("pair time ratio %.3f > %.2f on %s" % (out[label]["ratio"], PAIR_TARGET, label))
    return out


def run_ab(exe, n, reps, libpython, preload):
    r = subprocess.run([exe, str(n), str(reps), "ab:" + libpython], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, env=env_with(preload), timeout=600)
    m = re.search(r"ABRESULT raw=([\d.]+) wrapped=([\d.]+) ratio=([\d.]+)", r.stdout.decode())
    if r.returncode != 0 or not m:
        raise RuntimeError("%s ab failed (status %d): %s" % (
            exe, r.returncode, r.stderr.decode(errors="replace")[-500:]))
    return float(m.group(1)), float(m.group(2)), float(m.group(3))


def measure_pair_ab(cases, lib, hop, procs, n, reps, cpu):
    """1b: in-process A/B, guard and do-nothing interposer, interposed cases only."""
    pin(cpu)
    ab_cases = [c for c in cases if c[2] == "plt" and c[0].endswith("[plt: interpose]")]
    res = {c[0]: {"guard": [], "hop": [], "raw_ns": [], "guard_ns": []} for c in ab_cases}
    for p in range(procs):
        log("bench: pair A/B process %d/%d" % (p + 1, procs))
        for label, exe, _, t in ab_cases:
            order = [("guard", lib), ("hop", hop)] if p % 2 == 0 else [("hop", hop), ("guard", lib)]
            try:
                for name, pre in order:
                    raw, wrapped, ratio = run_ab(exe, n, reps, t.libpython, pre)
                    res[label][name].append(ratio)
                    if name == "guard":
                        res[label]["raw_ns"].append(raw)
                        res[label]["guard_ns"].append(wrapped)
            except (RuntimeError, subprocess.TimeoutExpired) as e:
                print("%s: A/B process %d failed: %s" % (label, p + 1, str(e)[:300]))
    pin(None)
    rows, out = [], {}
    for label, _, _, _ in ab_cases:
        r = res[label]
        if not r["guard"] or not r["hop"]:
            rows.append([label, "failed", "-", "-", "-", "-", "-"])
            continue
        g, h = median(r["guard"]), median(r["hop"])
        rows.append([label, "%.2f" % median(r["raw_ns"]), "%.2f" % median(r["guard_ns"]), fmt_ratio(g),
                     "%.3f-%.3f" % (min(r["guard"]), max(r["guard"])), fmt_ratio(h),
                     "%.3f-%.3f" % (min(r["hop"]), max(r["hop"]))])
        out[label] = {"ratio": g, "hop_ratio": h, "per_process": r}
    table("1b. the pair in one process: %d rounds of %d pairs each way per process (thread CPU "
          "time), alternating; median over %d processes of each process's median ratio; pinned "
          "to CPU %s" % (reps, n, procs, cpu),
          ["interpreter [path]", "raw ns", "guard ns", "guard ratio", "guard range",
           "do-nothing interposer ratio", "its range"], rows)
    for label in out:
        if out[label]["ratio"] > PAIR_TARGET:
            target_missed("in-process pair ratio %.3f > %.2f on %s (a do-nothing interposer: %.3f)"
                          % (out[label]["ratio"], PAIR_TARGET, label, out[label]["hop_ratio"]))
    return out


def measure_pair_instr(cases, lib, hop, n1, n2, jobs):
    jobs_list = []
    for label, exe, mode, _ in cases:
        for variant, pre in (("raw", None), ("hop", hop), ("guard", lib)):
            if variant == "hop" and mode != "plt":
                continue  # the do-nothing hop cannot be on a direct call's path
            for n in (n1, n2):
                jobs_list.append((label, variant, n, [exe, str(n), "1", mode], pre))
    log("bench: pair instructions: %d callgrind runs, %d at a time" % (len(jobs_list), jobs))
    def one(j):
        try:
            return callgrind_total(j[3], j[4])
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            print("%s (%s, N=%d): callgrind failed: %s" % (j[0], j[1], j[2], str(e)[:300]))
            return None
    with ThreadPoolExecutor(max_workers=jobs) as ex:
        totals = list(ex.map(one, jobs_list))
    got = {}
    for (label, variant, n, _, _), tot in zip(jobs_list, totals):
        got[(label, variant, n)] = tot
    dn = pairs_executed(n2) - pairs_executed(n1)
    rows, out = [], {}
    for label, _, mode, _ in cases:
        per = {}
        for variant in ("raw", "hop", "guard"):
            a, b = got.get((label, variant, n1)), got.get((label, variant, n2))
            if a is not None and b is not None:
                per[variant] = (b - a) / float(dn)
        if "raw" not in per or "guard" not in per:
            rows.append([label, "failed", "-", "-", "-", "-", "-"])
            continue
        hop_s = "%.1f" % per["hop"] if "hop" in per else "-"
        hop_d = "%+.1f" % (per["hop"] - per["raw"]) if "hop" in per else "-"
        rows.append([label, "%.1f" % per["raw"], hop_s, "%.1f" % per["guard"], hop_d,
                     "%+.1f" % (per["guard"] - per["raw"]), fmt_ratio(per["guard"] / per["raw"])])
        out[label] = per
    table("2. instructions per pair (callgrind, (total(N=%d) - total(N=%d)) / %d pairs)"
          % (n2, n1, dn),
          ["interpreter [path]", "raw", "hop", "guard", "hop-raw", "guard-raw", "guard/raw"], rows)
    for label, per in out.items():
        d = per["guard"] - per["raw"]
        if d > PAIR_INSTR_TARGET:
            target_missed("guard adds %.1f instructions per pair (> %.0f) on %s"
                          % (d, PAIR_INSTR_TARGET, label))
    return out


def spawn_time(argv, env):
    """(CPU seconds of the child: user + system, wall seconds). CPU time does not count
    the time the child waited for a CPU, which dominates wall time on a loaded machine."""
    t0 = time.perf_counter()
    if hasattr(os, "posix_spawn"):  # 3.8+: less of the driver's own cost in the figure
        pid = os.posix_spawn(argv[0], argv, env)
    else:
        pid = subprocess.Popen(argv, env=env).pid
    _, status, ru = os.wait4(pid, 0)
    dt = time.perf_counter() - t0
    if status != 0:
        raise RuntimeError("%s exited with status %d" % (" ".join(argv), status))
    return ru.ru_utime + ru.ru_stime, dt


STARTUP_VARIANTS = ("raw", "guard", "empty", "off")


def measure_startup(targets, lib, runs, jobs, cpu):
    """{name: figures} for every runnable target: time and instructions without the guard,
    with it, and the two floors under it -- an empty preloaded object (what any LD_PRELOAD
    costs) and the guard with PYFINGUARD_PATCH=off (the guard without its entry patches)
    -- measured in the same rounds; instructions only where valgrind is."""
    runnable = [t for t in targets if t.can_run]
    empty = build_empty_preload()
    envs = {"raw": env_with(None), "guard": env_with(lib), "empty": env_with(empty),
            "off": dict(env_with(lib), PYFINGUARD_PATCH="off")}
    # Instructions first (parallel, unpinned: counts do not depend on scheduling).
    have_vg = bool(shutil.which(VALGRIND[0]))
    jl = [(t, k) for t in runnable for k in STARTUP_VARIANTS] if have_vg else []
    if not have_vg:
        print("start-up instructions: not measured here (valgrind not found)")
    log("bench: start-up instructions: %d callgrind runs" % len(jl))

    def one(j):
        try:
            return callgrind_total([j[0].executable, "-c", "pass"], None, envs[j[1]])
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            print("%s (%s): callgrind failed: %s" % (j[0].name, j[1], str(e)[:300]))
            return None
    with ThreadPoolExecutor(max_workers=jobs) as ex:
        tot = list(ex.map(one, jl))
    instr = {}
    for (t, k), n in zip(jl, tot):
        instr[(t.name, k)] = n
    pin(cpu)
    res = {}
    for t in runnable:
        log("bench: start-up time %s (%d x 4 runs)" % (t.name, runs))
        argv = [t.executable, "-c", "pass"]
        cpu_s = {k: [] for k in envs}
        ratio = {k: [] for k in envs}
        wall = []
        try:
            for k in envs:  # warm the page cache for each
                spawn_time(argv, envs[k])
        except RuntimeError as e:
            print("%s: start-up failed: %s" % (t.name, e))
            continue
        for i in range(runs):
            order = list(envs) if i % 2 == 0 else list(envs)[::-1]
            got = {}
            for k in order:
                got[k] = spawn_time(argv, envs[k])
            for k in envs:
                cpu_s[k].append(got[k][0])
                ratio[k].append(got[k][0] / got["raw"][0])
            wall.append(got["guard"][1] / got["raw"][1])
        res[t.name] = (median(cpu_s["raw"]), median(cpu_s["guard"]), median(ratio["guard"]), median(wall),
                       median(ratio["empty"]), median(ratio["off"]))
    pin(None)
    out = {}
    for t in runnable:
        if t.name not in res:
            out[t.name] = {"kind": t.kind, "failed": True}
            continue
        r_ms, g_ms, ratio, wall, empty_ratio, off_ratio = res[t.name]
        ins = {k: instr.get((t.name, k)) for k in STARTUP_VARIANTS}
        ir = ins["raw"]
        out[t.name] = {"kind": t.kind, "raw_cpu_ms": r_ms * 1e3, "guard_cpu_ms": g_ms * 1e3,
                       "time_ratio": ratio, "wall_ratio": wall, "empty_ratio": empty_ratio,
                       "patch_off_ratio": off_ratio, "raw_instr": ir, "guard_instr": ins["guard"],
                       "empty_instr": ins["empty"], "off_instr": ins["off"],
                       "load_average": os.getloadavg()[0]}
        for k, name in (("guard", "instr_ratio"), ("empty", "empty_instr_ratio"),
                        ("off", "off_instr_ratio")):
            out[t.name][name] = ins[k] / float(ir) if ir and ins[k] else None
    return out


def report_startup(out, runs, cpu):
    rows = []
    for name, o in out.items():
        if o.get("failed"):
            rows.append([name, "failed"] + ["-"] * 11)
            continue
        ir, ig = o["raw_instr"], o["guard_instr"]

        def ratio(key):
            return fmt_ratio(o[key]) if o.get(key) else "-"
        rows.append([name, "%.2f" % o["raw_cpu_ms"], "%.2f" % o["guard_cpu_ms"],
                     fmt_ratio(o["time_ratio"]), fmt_ratio(o["wall_ratio"]),
                     fmt_ratio(o["empty_ratio"]), fmt_ratio(o["patch_off_ratio"]),
                     "%.2fM" % (ir / 1e6) if ir else "-",
                     "%+.3fM" % ((ig - ir) / 1e6) if ir and ig else "-",
                     ratio("instr_ratio"), ratio("empty_instr_ratio"), ratio("off_instr_ratio"),
                     "%.2f" % o["load_average"] if o.get("load_average") is not None else "-"])
    table("3. start-up: `python -c pass`; time: CPU time (user+sys) of the child, median of %d "
          "interleaved rounds of runs pinned to CPU %s, ratio = median of per-round ratios to no "
          "guard; instructions: callgrind totals, ratio to no guard. Floors: an empty preloaded "
          "object, and the guard with PYFINGUARD_PATCH=off. Load: the 1-minute load average when "
          "the row's runs ended" % (runs, cpu),
          ["interpreter", "raw cpu ms", "guard cpu ms", "time ratio", "wall ratio",
           "empty time", "off time", "raw instr", "guard delta", "instr ratio",
           "empty instr", "off instr", "load"], rows)
    for name, o in out.items():
        if o.get("failed"):
            continue
        tt = START_TIME_TARGET_STATIC if o["kind"] == "static exe" else START_TIME_TARGET
        if o["time_ratio"] > tt:
            target_missed("start-up time ratio %.3f > %.2f on %s" % (o["time_ratio"], tt, name))
        if o.get("instr_ratio") and o["instr_ratio"] > START_INSTR_TARGET:
            target_missed("start-up instruction ratio %.4f > %.3f on %s"
                          % (o["instr_ratio"], START_INSTR_TARGET, name))


# The amd64 chroots of tools/debian-env whose static pythons run here only inside them
# (their glibc is newer than this machine's): Debian 13's python3.13, unstable's
# python3.13/3.14/3.15.
CHROOTS = ("trixie", "sid")


def measure_startup_chroot(envname, interp, runs, cpu, vg):
    """The start-up measurement inside the tools/debian-env ENV chroot, with the library
    built there into build-ENV/ and callgrind from vg (valgrind_copy()). Rows are named
    "ENV <name>". {} with a printed reason when the chroot cannot be used."""
    denv = os.path.join(REPO, "tools", "debian-env")
    if os.geteuid() != 0:
        print("%s chroot: skipped: not root (tools/debian-env needs root for chroot and mounts)" % envname)
        return {}
    r = subprocess.run([denv, envname, "path"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if r.returncode != 0:
        print("%s chroot: skipped: it does not exist here (create it with: tools/debian-env %s create)"
              % (envname, envname))
        return {}
    log("bench: tools/debian-env %s build" % envname)
    r = subprocess.run([denv, envname, "build"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        print("%s chroot: skipped: building build-%s/ failed: %s"
              % (envname, envname, r.stdout.decode(errors="replace")[-300:]))
        return {}
    bdir = os.path.join(REPO, "build-" + envname)
    out_json = os.path.join(bdir, "bench-startup.json")
    if os.path.exists(out_json):
        os.unlink(out_json)
    cmd = [denv, envname, "run", "/usr/bin/python3", os.path.join(HERE, "bench.py"), "--in-chroot",
           "--only", "startup", "--lib", os.path.join(bdir, "shim", "libpyfinguard.so"),
           "--startup-runs", str(runs), "--json", out_json]
    if vg:
        cmd += ["--valgrind-dir", vg]
    if cpu is not None:
        cmd += ["--cpu", str(cpu)]
    for s in interp:
        cmd += ["--interp", s]
    log("bench: start-up inside the %s chroot" % envname)
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if r.returncode != 0 or not os.path.exists(out_json):
        print("%s chroot: skipped: the run inside failed (status %d): %s"
              % (envname, r.returncode, r.stdout.decode(errors="replace")[-400:]))
        return {}
    with open(out_json) as f:
        inner = json.load(f).get("startup", {})
    if not inner:
        print("%s chroot: no interpreter there matches --interp %s" % (envname, " --interp ".join(interp)))
    return {"%s %s" % (envname, name): o for name, o in inner.items()}


def qemu_instructions(qemu_argv, env_):
    """Guest instructions a program executes under qemu-user, from qemu's own log: each
    translated block once with its instructions (-d in_asm), each execution of a block
    (-d exec, with -d nochain so that no chained jump goes unlogged). Exact for a given
    binary and input, like callgrind's count (the program's own instructions and ld.so's;
    not the kernel's)."""
    fd, path = tempfile.mkstemp(prefix="pfg-qemu-", suffix=".log")
    os.close(fd)
    try:
        r = subprocess.run(qemu_argv[:1] + ["-d", "in_asm,exec,nochain", "-D", path] + qemu_argv[1:],
                           env=env_, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=600)
        if r.returncode != 0:
            raise RuntimeError("exit %d: %s" % (r.returncode, r.stderr.decode(errors="replace")[-300:]))
        sizes, total, first, n = {}, 0, None, 0
        with open(path, "rb") as f:
            for line in f:
                c = line[:1]
                if c == b"T":    # "Trace 0: HOST [cs_base/pc/flags/cflags]", 16 hex digits each
                    i = line.index(b"[")
                    total += sizes[line[i + 18:i + 34]]
                elif c == b"0":  # "0xPC:  insn" in an IN: block
                    if first is None:
                        first = line[2:line.index(b":")].rjust(16, b"0")
                    n += 1
                elif first is not None:  # the block's end (blank line or the next separator)
                    sizes[first], first, n = n, None, 0
        return total
    finally:
        os.unlink(path)


def measure_startup_arm64(interp):
    """{name: {variant: instructions}} for the static pythons of the arm64 sysroots, under
    qemu-user (valgrind cannot run there, and times would be the emulator's): without the
    guard, with build-arm64's library, with an empty preloaded object cross-built here,
    and with PYFINGUARD_PATCH=off. Said, not silently left out, where a piece is missing."""
    denv = os.path.join(REPO, "tools", "debian-env")
    lib = os.path.join(REPO, "build-arm64", "shim", "libpyfinguard.so")
    if not os.path.exists(lib):
        print("arm64 start-up: not measured (no build-arm64/shim/libpyfinguard.so: "
              "tools/debian-env bookworm-arm64 build)")
        return {}
    src = os.path.join(HERE, "empty_preload.c")
    empty = os.path.join(build_dir(), "empty_preload-arm64.so")
    res = {}
    for envname in ("bookworm-arm64", "trixie-arm64"):
        r = subprocess.run([denv, envname, "path"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if r.returncode != 0:
            print("%s: start-up not measured (no sysroot: tools/debian-env %s create)" % (envname, envname))
            continue
        root = r.stdout.decode().strip()
        runner, triplet, why = interpreters.sysroot_runner(root)
        cc = triplet and shutil.which(triplet + "-gcc")
        if runner is None or not cc:
            print("%s: start-up not measured (%s)" % (envname, why or "no %s-gcc" % triplet))
            continue
        compile_cached([cc, "-O2", "-shared", "-fPIC", src], [src], empty)
        for it in interpreters.discover_sysroot(root):
            name = it.name
            if it.kind == "embed-only" or (interp and not any(i in name for i in interp)):
                continue
            if it.skip:
                print("%s: start-up not measured (%s)" % (name, it.skip))
                continue
            log("bench: arm64 start-up instructions %s (4 runs under qemu-user)" % name)
            envs = {"raw": env_with(None), "guard": env_with(lib), "empty": env_with(empty),
                    "off": dict(env_with(lib), PYFINGUARD_PATCH="off")}
            try:
                res[name] = {k: qemu_instructions(it.runner + [it.executable, "-c", "pass"], e)
                             for k, e in envs.items()}
            except (RuntimeError, KeyError, subprocess.TimeoutExpired) as e:
                print("%s: qemu instruction count failed: %s" % (name, str(e)[:300]))
    rows = []
    for name, v in res.items():
        pct = lambda k: "%+.2f %%" % (100.0 * (v[k] - v["raw"]) / v["raw"])
        rows.append([name, "{:,}".format(v["raw"]), "{:+,}".format(v["guard"] - v["raw"]), pct("guard"),
                     pct("empty"), pct("off")])
        if v["guard"] > v["raw"] * START_INSTR_TARGET:
            target_missed("arm64 start-up instructions %s on %s (> %+.1f %%)"
                          % (pct("guard"), name, 100 * (START_INSTR_TARGET - 1)))
    if rows:
        table("3b. start-up instructions on arm64 (python -c pass under qemu-user, its "
              "translated-block log; no times: they would be the emulator's)",
              ["interpreter", "raw", "guard-raw", "guard", "empty", "patch=off"], rows)
    return res


def annotate(cgfile, inclusive):
    """(total, [(Ir, function, object)]) from callgrind_annotate's per-function summary of
    one profile (source annotation off; only the summary block is read)."""
    cmd = ["callgrind_annotate", "--threshold=100", "--auto=no"] + \
        (["--inclusive=yes"] if inclusive else [])
    r = subprocess.run(cmd + [cgfile], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    total, rows, in_summary = 0, [], False
    for line in r.stdout.decode(errors="replace").splitlines():
        m = re.match(r"\s*([\d,]+) \([^)]*\)\s+PROGRAM TOTALS", line)
        if m:
            total = int(m.group(1).replace(",", ""))
            continue
        if re.match(r"\s*Ir\s+file:function", line):
            in_summary = True
            continue
        if not in_summary or line.startswith("---"):
            continue
        m = re.match(r"\s*([\d,]+) \([^)]*\)\s+(.*?)(?: \[(.*)\])?$", line)
        if not m:
            if rows:
                break  # end of the summary block
            continue
        src, _, fn = m.group(2).partition(":")
        # Lines inlined from another file have no object; keep the file in its place.
        rows.append((int(m.group(1).replace(",", "")), fn or src, m.group(3) or "@" + src))
    return total, rows


# What start-up work belongs to the guard: its own functions and the libc/ld.so/Zydis
# routines it calls (dladdr scans a whole symbol table per call).
STARTUP_KEYS = ("libpyfinguard", "dladdr", "_dl_addr", "Zydis")


def profile(targets, lib, cases):
    """Where the guard's instructions go: per hook per pair, and its start-up work.
    Profiles (--dump-instr=yes, for callgrind_annotate --auto/objdump) stay in the build
    directory; the command for each is printed."""
    n = 200000
    for label, exe, mode, _ in cases:
        out = os.path.join(build_dir(), "profile-pair-%s.cg" % re.sub(r"[^A-Za-z0-9.]+", "_", label))
        argv = ["valgrind", "--tool=callgrind", "--dump-instr=yes", "--callgrind-out-file=" + out,
                exe, str(n), "1", mode]
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env_with(lib))
        # Self cost per function in the guard, and in anonymous code (the entry patches'
        # stubs and trampolines have no symbol: "???" objects).
        _, rows = annotate(out, False)
        # The guard's own lines inlined from its headers or libstdc++'s count too.
        rows = [r for r in rows if "libpyfinguard" in r[2] or r[2] == "???" or
                (r[2].startswith("@") and ("/shim/" in r[2] or "/c++/" in r[2]))]
        per = pairs_executed(n)

        def where(obj):
            if obj == "???":
                return "anonymous: patch stub/trampoline"
            if obj.startswith("@"):
                return "inlined: " + obj.rsplit("/", 1)[-1][:20]
            return obj.rsplit("/", 1)[-1][:24]
        trows = [[fn[:70], where(obj), "%d" % ir, "%.1f" % (ir / float(per))]
                 for ir, fn, obj in rows if ir / float(per) >= 0.5]
        table("profile: guard code per pair, %s (PYTHONHASHSEED=0 LD_PRELOAD=%s %s)"
              % (label, lib, " ".join(argv)), ["function (self cost)", "object", "Ir",
                                              "Ir / pairs run"], trows)
    for t in targets:
        if not t.can_run:
            continue
        out = os.path.join(build_dir(), "profile-startup-%s.cg" % re.sub(r"[^A-Za-z0-9.]+", "_", t.name))
        argv = ["valgrind", "--tool=callgrind", "--dump-instr=yes", "--callgrind-out-file=" + out,
                t.executable, "-c", "pass"]
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env_with(lib))
        total, rows = annotate(out, True)
        total = total or 1
        keep = [r for r in rows if any(k in r[1] or k in r[2] for k in STARTUP_KEYS)
                and "Py_" not in r[1] and "PyEval" not in r[1] and r[0] >= total // 2000]
        trows = [[fn[:90], obj.rsplit("/", 1)[-1][:24], "%d" % ir, "%.2f%%" % (100.0 * ir / total)]
                 for ir, fn, obj in keep[:25]]
        table("profile: guard start-up work (inclusive), %s (PYTHONHASHSEED=0 LD_PRELOAD=%s %s)"
              % (t.name, lib, " ".join(argv)), ["function", "object", "Ir", "of total"], trows)
        # The same without the guard, and the difference per function (self cost): this also
        # shows work done for the guard outside its own code, e.g. ld.so binding the
        # symbols of the libraries it pulls in.
        raw_out = out[:-3] + ".raw.cg"
        raw_argv = argv[:3] + ["--callgrind-out-file=" + raw_out] + argv[4:]
        subprocess.run(raw_argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       env=env_with(None))
        raw_total, raw_rows = annotate(raw_out, False)
        g_total, g_rows = annotate(out, False)
        acc = {}
        for sign, rr in ((-1, raw_rows), (1, g_rows)):
            for ir, fn, obj in rr:
                k = (fn, "inlined: " + obj.rsplit("/", 1)[-1] if obj.startswith("@")
                     else obj.rsplit("/", 1)[-1])
                acc[k] = acc.get(k, 0) + sign * ir
        top = sorted(acc.items(), key=lambda kv: -abs(kv[1]))[:15]
        table("profile: start-up, guard minus no guard, self cost per function, %s "
              "(total %+d of %d; the no-guard run: %s)" % (t.name, g_total - raw_total, raw_total,
                                                           " ".join(raw_argv)),
              ["function", "object", "delta Ir"],
              [[fn[:90], obj[:24], "%+d" % d] for (fn, obj), d in top])


def main(argv=None):
    global ALL_CPUS
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="fewer rounds and shorter loops (a smoke run, noisier)")
    ap.add_argument("--interp", action="append", default=[],
                    help="only interpreters whose name contains this (repeatable)")
    ap.add_argument("--lib", default=None,
                    help="the guard library (default: tools/pfgpy/library.py's, "
                         "<repo>/build/shim/libpyfinguard.so, built with meson if missing)")
    ap.add_argument("--only", choices=["pair-time", "pair-ab", "pair-instr", "startup", "startup-arm64", "profile"],
                    action="append",
                    help="run only these measurements (repeatable; default: all but profile, which "
                         "breaks the guard's instructions down with callgrind_annotate)")
    ap.add_argument("--rounds", type=int, help="pair time rounds (default 15, quick 5)")
    ap.add_argument("--ab-procs", type=int, help="pair A/B processes each (default 21, quick 7)")
    ap.add_argument("--startup-runs", type=int, help="start-up runs each (default 40, quick 10)")
    ap.add_argument("--cpu", type=int, default=None,
                    help="CPU to pin timed runs to (default: the last one)")
    ap.add_argument("--json", help="also write all figures to this file")
    ap.add_argument("--no-chroot", "--no-sid", action="store_true",
                    help="start-up: leave out the tools/debian-env chroots' interpreters "
                         "(Debian 13's and unstable's)")
    ap.add_argument("--no-arm64", action="store_true",
                    help="start-up: leave out the arm64 sysroots' pythons (instructions under "
                         "qemu-user; --only startup-arm64 runs only those)")
    ap.add_argument("--chroot", action="append", choices=CHROOTS,
                    help="start-up: only these chroots (repeatable; default: %s)" % ", ".join(CHROOTS))
    ap.add_argument("--in-chroot", "--in-sid", action="store_true", help=argparse.SUPPRESS)  # the run inside one
    ap.add_argument("--valgrind-dir", help=argparse.SUPPRESS)  # inside a chroot: valgrind_copy()
    a = ap.parse_args(argv)

    only = set(a.only or ["pair-time", "pair-ab", "pair-instr", "startup"])
    if a.valgrind_dir:  # inside a chroot: the host's valgrind, copied (valgrind_copy())
        VALGRIND[:] = [os.path.join(a.valgrind_dir, "valgrind")]
        VALGRIND_ENV["VALGRIND_LIB"] = os.path.join(a.valgrind_dir, "lib")
    # Start-up times are measured without valgrind where there is none.
    needs = [os.environ.get("CC", "cc")] + (["valgrind"] if only - {"startup"} else [])
    for tool in needs:
        if not shutil.which(tool):
            log("bench: %s not found" % tool)
            return 2
    ALL_CPUS = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    cpu = a.cpu if a.cpu is not None else (max(ALL_CPUS) if ALL_CPUS else None)
    rounds = a.rounds or (5 if a.quick else 15)
    sruns = a.startup_runs or (10 if a.quick else 40)
    # Short loops, many of them: the minimum over a process's loops is then likely to
    # include a loop that no other process disturbed.
    n, reps = (100000, 5) if a.quick else (200000, 15)
    n1, n2 = (50000, 100000) if a.quick else (100000, 200000)
    jobs = max(1, min(2, len(ALL_CPUS or [0])))
    ab_procs = a.ab_procs or (7 if a.quick else 21)

    lib = ensure_lib(a.lib)
    targets, source = discover()
    if a.in_chroot:  # only the chroot's own executables (its libpythons are embed-only)
        targets = [t for t in targets if t.can_run and t.executable.startswith("/usr/bin/")]
    if a.interp:
        targets = [t for t in targets if any(s in t.name for s in a.interp)]
    if not targets and a.in_chroot:
        with open(a.json, "w") as f:
            json.dump({"startup": {}}, f)
        return 0
    if not targets and not ("startup" in only and not a.no_chroot):
        log("bench: no interpreter matches")
        return 2
    print("guard: %s" % lib)
    print("interpreters (%s): %s" % (source, ", ".join(t.name for t in targets)))
    print("machine: %d CPUs, load average %s" % (len(ALL_CPUS or []), " ".join(
        "%.2f" % x for x in os.getloadavg())))

    results = {"lib": lib, "interpreters": [t.name for t in targets]}
    started = time.time()
    cases = pair_cases(targets, lib) if only & {"pair-time", "pair-ab", "pair-instr", "profile"} else []
    if cases and "pair-time" in only:
        results["pair_time"] = measure_pair_time(cases, lib, rounds, n, reps, cpu)
    if cases and "pair-ab" in only:
        results["pair_ab"] = measure_pair_ab(cases, lib, build_null_hop(), ab_procs, 20000, 41, cpu)
    if cases and "pair-instr" in only:
        results["pair_instr"] = measure_pair_instr(cases, lib, build_null_hop(), n1, n2, jobs)
    if "startup" in only:
        results["startup"] = measure_startup(targets, lib, sruns, jobs, cpu)
        if not a.in_chroot and not a.no_chroot:
            vg = valgrind_copy()
            for envname in a.chroot or CHROOTS:
                results["startup"].update(measure_startup_chroot(envname, a.interp, sruns, cpu, vg))
        report_startup(results["startup"], sruns, cpu)
    if ("startup" in only or "startup-arm64" in only) and not a.in_chroot and not a.no_arm64:
        results["startup_arm64"] = measure_startup_arm64(a.interp)
    if "profile" in only:
        profile(targets, lib, cases)
    print()
    print("load average at the end: %s; %.0f s" % (
        " ".join("%.2f" % x for x in os.getloadavg()), time.time() - started))
    if missed:
        print("%d target(s) missed:" % len(missed))
        for m in missed:
            print("  " + m)
    else:
        print("all targets met")
    results["missed"] = missed
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
