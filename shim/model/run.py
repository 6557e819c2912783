#!/usr/bin/env python3
"""Run the spin model of the park protocol (shim/model/park.pml) in every configuration.

Each configuration is a set of -D flags and an expectation (per CPython generation where
they differ):
  verify          spin must explore the whole state space and find nothing (the protocol,
                  a fix, or a mutant/gap on the generations where it does no harm)
  counterexample  the old design, a mutant or a documented gap: spin must find a violation
                  (a mutant that survives means the model cannot see that check)

Usage:
  run.py                     run everything, exit 1 if any expectation fails
  run.py --only NAME ...     run the named configurations (see --list)
  run.py --list              list configurations
  run.py --trail NAME        print the counterexample of NAME as a readable Markdown table
  run.py -j N                parallel runs (default: number of CPUs)

Works in a temporary directory: spin and pan write pan.*, *.trail next to the model
they are given, and none of that belongs in the tree.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL = os.path.join(HERE, "park.pml")
GENS = {"38": "CPython <= 3.8", "313": "CPython 3.9-3.13", "314": "CPython 3.14"}
ALL = ("38", "313", "314")
# pan.c is compiled once per run and that dominates the time: clang -O0 takes half of
# gcc -O0's time on it. $CC overrides.
CC = os.environ.get("CC") or ("clang" if shutil.which("clang") else "gcc")


class Config:
    def __init__(self, name, defines, expect, what, gens=ALL):
        self.name, self.defines, self.what, self.gens = name, defines, what, gens
        # one expectation for every generation, or {gen: expectation}
        self.expects = expect if isinstance(expect, dict) else {g: expect for g in gens}
        self.expect = "/".join(sorted(set(self.expects.values()), reverse=True))

    def expect_for(self, gen):
        return self.expects[gen]


# name, -D flags, expectation, what it is.  docs/model.md describes each one.
# name, -D flags, expectation, what it is: configs.json (data; docs/model.md describes each).
with open(os.path.join(HERE, "configs.json")) as _f:
    CONFIGS = [Config(c["name"], c["defines"], c["expect"], c["what"], tuple(c.get("gens", ALL)))
               for c in json.load(_f)["configs"]]
BY_NAME = {c.name: c for c in CONFIGS}


def run_one(cfg, gen, keep_trail=False):
    """Verify one configuration for one generation. Returns a result dict.
    keep_trail: also search for the shortest counterexample (pan -i) and return it."""
    defs = ["-DPYGEN=" + gen] + ["-D" + d for d in cfg.defines]
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pfg-spin-") as tmp:
        pml = os.path.join(tmp, "park.pml")
        shutil.copy(MODEL, pml)
        r = subprocess.run(["spin", "-a"] + defs + ["park.pml"], cwd=tmp,
                           capture_output=True, text=True)
        if r.returncode != 0 or not os.path.exists(os.path.join(tmp, "pan.c")):
            return {"ok": False, "error": "spin -a failed: " + (r.stdout + r.stderr).strip()}
        # -O0: compiling pan.c dominates (the state spaces are small); SAFETY: no cycle
        # detection needed, the model has no loops that could run forever; REACH makes
        # -i (shortest trail) exact.
        cflags = ["-O0", "-DSAFETY", "-DVECTORSZ=256"] + (["-DREACH"] if keep_trail else [])
        r = subprocess.run([CC] + cflags + ["-o", "pan", "pan.c"],
                           cwd=tmp, capture_output=True, text=True)
        if r.returncode != 0:
            return {"ok": False, "error": CC + " failed: " + r.stderr.strip()[:2000]}
        r = subprocess.run(["./pan", "-m100000"] + (["-i"] if keep_trail else []), cwd=tmp,
                           capture_output=True, text=True)
        out = r.stdout
        res = {"gen": gen, "seconds": time.monotonic() - t0}
        m = re.search(r"errors: (\d+)", out)
        res["errors"] = int(m.group(1)) if m else -1
        m = re.search(r"(\d+) states, stored", out)
        res["states"] = int(m.group(1)) if m else -1
        m = re.search(r"depth reached (\d+)", out)
        res["depth"] = int(m.group(1)) if m else -1
        m = re.search(r"^pan:1: (.*)$", out, re.M)
        res["violation"] = m.group(1) if m else ""
        res["truncated"] = "max search depth too small" in out
        res["ok"] = res["errors"] >= 0
        if res["errors"] > 0 and keep_trail:
            t = subprocess.run(["spin", "-t", "-p", "-g", "-l"] + defs + ["park.pml"], cwd=tmp,
                               capture_output=True, text=True)
            res["trail"] = t.stdout
        return res


def judge(cfg, results):
    """A configuration meets its expectation if every generation does."""
    problems = []
    for res in results:
        if not res.get("ok"):
            problems.append(res.get("error", "failed"))
        elif res["truncated"]:
            problems.append("%s: search truncated (depth limit)" % res["gen"])
        elif cfg.expect_for(res["gen"]) == "verify" and res["errors"] != 0:
            problems.append("%s: counterexample: %s" % (res["gen"], res["violation"]))
        elif cfg.expect_for(res["gen"]) == "counterexample" and res["errors"] == 0:
            problems.append("%s: no counterexample (the mutant survives)" % res["gen"])
    return problems


# ---- readable trails ------------------------------------------------------------------

STEP = re.compile(r"^\s*(\d+):\s+proc\s+(\d+)\s+\((\w+):\d+\)\s+\S+:(\d+)\s+\(state \d+\)\s+\[(.*)\]\s*$")
VAR = re.compile(r"^\s+(\S+) = (\S+)\s*$")


SHOWN = re.compile(r"^(g_epoch|gil|rt_gen|rt_fin|rt_init|rt_alive|released|inflight|window\[\d\]|mem_owner\[\d\]|parked\[\d\]|done\[\d\]|"
                   r"\w+\.(e|h_ts|h_epoch|t_fin_gen|my_ts|fin_seen))$")
PHASES = {0: "RUNNING", 1: "FINALIZING", 2: "FINALIZED", 3: "saved outside RUNNING"}
THREADS = {"1": "Main", "2": "Worker", "3": "Native", "0": "free"}


def show(name, val):
    """One state change, with epochs decoded and GIL / memory owners named."""
    base = name.split(".")[-1]
    if base in ("g_epoch", "e", "h_epoch") and val.isdigit() and int(val):
        v = int(val)
        return "%s=%d (gen %d %s)" % (name, v, v // 4, PHASES.get(v % 4, "?"))
    if base == "gil" or name.startswith("mem_owner"):
        return "%s=%s" % (name, {"0": "free", "9": "destroyed"}.get(val, THREADS.get(val, val)))
    return "%s=%s" % (name, val)


PROPERTIES = [   # (pattern in the failed assertion, property in docs/model.md)
    ("gil!=(_pid+1))||", "P0c a thread holding the GIL waited in guard code before the point of no return"),
    ("(_pid==0)||!", "P0a a thread waited in guard code before the point of no return"),
    ("(0!=_pid)||", "P0b the finalizer waited in guard code before the point of no return"),
    ("(0!=_pid)", "P0b the guard released or took the finalizer's GIL"),
    ("mem_owner[my_ts]", "P1 a thread used a thread state that was freed (or reused by another thread)"),
    ("rt_alive", "P1 PyGILState_Ensure read the interpreter after it was freed"),
    ("mem_gen[my_ts]==rt_gen", "P5 a thread of an old generation was admitted into the new runtime"),
    ("!(rt_fin)||(_pid==0)", "P2 a thread other than the finalizer ran Python after the point of no return"),
    ("_pid!=0", "P3 the finalizing thread was parked"),
    ("my_late", "P4 a thread arriving after the point of no return passed the guard"),
    ("(1!=1)", "P4 CPython terminated a late thread and the guard let it die instead of parking it"),
    ("fin_seen", "P6 a thread ending normally was parked before the point of no return"),
]


def property_of(failed):
    failed = failed.replace(" ", "")      # pan prints "|| !", spin -t "||!"
    for pat, text in PROPERTIES:
        if pat in failed:
            return text
    return ("P3/P4 invalid end state (deadlock): a thread (the finalizer, a joiner or a late "
            "thread) is blocked forever without being parked")


def render_trail(text, cfg, gen):
    src = open(MODEL).read().splitlines()
    rows, cur, prev_vals, vals = [], None, {}, {}
    failed = ""

    def flush():
        if cur is None:
            return
        changed = [show(k, v) for k, v in vals.items()
                   if prev_vals.get(k, v if v in ("0", "255") else None) != v and SHOWN.match(k)]
        prev_vals.update(vals)
        cur["changes"] = ", ".join(changed)
        rows.append(dict(cur))

    ends = []
    END = re.compile(r"^\s*\d+:\s+proc\s+\d+\s+\((\w+):\d+\)\s+\S+:(\d+)\s+\(state \d+\)\s*(<valid end state>)?")
    in_final = False
    for ln in text.splitlines():
        if ln.startswith("#processes"):
            in_final = True                   # the final dump repeats every variable
        if in_final:
            m = END.match(ln)
            if m:
                ends.append(m.groups())
            continue
        if "text of failed assertion" in ln:
            failed = ln.split(":", 2)[-1].strip()
        m = STEP.match(ln)
        if m:
            step, pid, proc, line, stmt = m.groups()
            if cur is not None and cur["step"] == step and cur["proc"] == proc:
                cur["stmt"].append(stmt)      # same atomic step
                continue
            flush()
            vals = {}
            cur = {"step": step, "proc": proc, "line": int(line), "stmt": [stmt]}
            continue
        v = VAR.match(ln)
        if v and cur is not None:
            name, val = v.groups()
            if "(" in name and ":" in name:   # locals: "Worker(1):e"
                proc, var = name.split(":", 1)
                name = proc.split("(")[0] + "." + var
            vals[name] = val
    flush()
    if not failed:
        failed = "invalid end state: a thread is blocked forever outside an end label"
    out = ["Counterexample for `%s` (%s; `shim/model/run.py --trail %s --gen %s`):" % (
        cfg.name, GENS[gen], cfg.name, gen), "**%s**." % property_of(failed), "",
        "| # | thread | model line | what it executes | state after |",
        "|---:|---|---|---|---|"]
    n = 0
    for r in rows:
        stmts = [s for s in r["stmt"] if s not in ("(1)", "else", ".(goto)", "break")]
        if not r["changes"] and all(s.startswith("assert") or not s for s in stmts):
            continue                          # passing checks and control flow: noise
        n += 1
        code = src[r["line"] - 1].strip() if 0 < r["line"] <= len(src) else ""
        code = re.sub(r"\s+", " ", code)[:72]
        stmt = "; ".join(stmts)[:80]
        out.append("| %d | %s | %d `%s` | `%s` | %s |" % (
            n, r["proc"], r["line"], code.replace("|", "\\|"),
            stmt.replace("|", "\\|"), r["changes"].replace("|", "\\|")))
    out.append("")
    out.append("The last step fails `%s`." % failed)
    if ends:
        out.append("Where each thread is when the trail ends:")
        out.append("")
        for proc, line, valid in reversed(ends):
            code = re.sub(r"\s+", " ", src[int(line) - 1].strip())[:72] if 0 < int(line) <= len(src) else ""
            out.append("* %s: line %s `%s`%s" % (proc, line, code,
                                                 " (valid end state)" if valid else ""))
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", help="configuration names")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--trail", help="render the counterexample of this configuration")
    ap.add_argument("--gen", choices=ALL, help="with --trail/--only: one generation only")
    ap.add_argument("-j", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--markdown", action="store_true", help="print the results as a Markdown table")
    a = ap.parse_args()
    for tool in ("spin", CC):
        if not shutil.which(tool):
            print("run.py: %s not found" % tool, file=sys.stderr)
            return 77   # meson: skipped
    if a.list:
        for c in CONFIGS:
            print("%-26s %-27s %-12s %s" % (c.name, c.expect, ",".join(c.gens), c.what))
        return 0
    if a.trail:
        cfg = BY_NAME[a.trail]
        gen = a.gen or cfg.gens[0]
        res = run_one(cfg, gen, keep_trail=True)
        if res.get("errors", 0) <= 0:
            print("no counterexample for %s (%s)" % (cfg.name, gen), file=sys.stderr)
            return 1
        print(render_trail(res["trail"], cfg, gen))
        return 0
    names = a.only or [c.name for c in CONFIGS]
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        print("unknown configuration(s): %s (see --list)" % " ".join(unknown), file=sys.stderr)
        return 2
    jobs = [(BY_NAME[n], g) for n in names for g in BY_NAME[n].gens if not a.gen or g == a.gen]
    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=max(1, a.j)) as ex:
        results = list(ex.map(lambda cg: (cg[0], run_one(*cg)), jobs))
    failed = 0
    if a.markdown:
        print("| configuration | CPython | expected | result | states | depth | s |")
        print("|---|---|---|---|---:|---:|---:|")
    for n in names:
        cfg = BY_NAME[n]
        rs = [r for c, r in results if c is cfg]
        problems = judge(cfg, rs)
        failed += bool(problems)
        for r in rs:
            if not r.get("ok"):
                continue
            verdict = ("verified" if r["errors"] == 0 else "counterexample: " + r["violation"])
            if a.markdown:
                short = "verified" if r["errors"] == 0 else property_of(r["violation"]).split(" ", 1)[0]
                print("| %s | %s | %s | %s%s | %d | %d | %.1f |" % (
                    cfg.name, {"38": "<=3.8", "313": "3.9-3.13", "314": "3.14"}[r["gen"]],
                    cfg.expect_for(r["gen"]), short, "" if not problems else " **FAILED**",
                    r["states"], r["depth"], r["seconds"]))
                continue
            print("%-26s %-4s %-8s %9d states  depth %3d  %5.1f s  %s" % (
                cfg.name, r["gen"], "ok" if not problems else "FAILED", r["states"], r["depth"],
                r["seconds"], verdict))
        for p in problems:
            print("%-26s FAILED: %s" % (cfg.name, p), file=sys.stderr if a.markdown else sys.stdout)
    print("%d configuration(s), %d run(s), %d failed, %.1f s wall" % (
        len(names), len(jobs), failed, time.monotonic() - t0))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
