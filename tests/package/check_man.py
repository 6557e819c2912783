"""The man pages (docs/man) against what they document: every command, option and exit
status of `pyfinguard --help` and `pyfinguard COMMAND --help` in pyfinguard(1); every
variable of docs/deployment.md's "Settings" table, with its values and default, in
pyfinguard-env(7); the version in their .TH lines is meson.build's; groff reads them
without a warning. Exit 1 with the list of what is missing.
"""
import os
import re
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.environ.get("PYFINGUARD_SOURCE_ROOT") or os.path.dirname(os.path.dirname(HERE))
MAN = os.path.join(REPO, "docs", "man")
LAUNCHER = os.path.join(REPO, "tools", "pyfinguard")


def roff_text(path):
    """The page's words with roff's escapes for '-' and quotes undone."""
    with open(path) as f:
        text = f.read()
    return text.replace("\\-", "-").replace("\\(dq", '"').replace("\\(<=", "≤")


def helps():
    env = dict(os.environ, PYFINGUARD_LIBRARY="/dev/null")   # --help needs no library
    out = {}
    for cmd in ([], ["run"], ["env"], ["doctor"], ["demo"]):
        r = subprocess.run([sys.executable, LAUNCHER] + cmd + ["--help"], env=env,
                           stdout=subprocess.PIPE, universal_newlines=True, check=True)
        out[" ".join(cmd)] = r.stdout
    return out


def main():
    problems = []
    with open(os.path.join(REPO, "meson.build")) as f:
        version = re.search(r"version\s*:\s*'([^']+)'", f.read()).group(1)
    page1 = roff_text(os.path.join(MAN, "pyfinguard.1"))
    page7 = roff_text(os.path.join(MAN, "pyfinguard-env.7"))
    for name, page in (("pyfinguard.1", page1), ("pyfinguard-env.7", page7)):
        m = re.search(r'^\.TH .*"pyfinguard ([^"]+)"', page, re.M)
        if not m or m.group(1) != version:
            problems.append("%s: .TH names version %s, meson.build %s"
                            % (name, m.group(1) if m else "none", version))

    h = helps()
    commands = re.findall(r"^    (\w+)\s{2,}", h[""], re.M)
    if len(commands) < 4:
        problems.append("could not read the commands from pyfinguard --help: %r" % commands)
    for c in commands:
        if not re.search(r"^\.B pyfinguard %s\b" % c, page1, re.M):
            problems.append("pyfinguard.1: no synopsis for command %s" % c)
        if not re.search(r"^\.B %s$" % c, page1, re.M):
            problems.append("pyfinguard.1: command %s not described under COMMANDS" % c)
    options = page1.split(".SH OPTIONS", 1)[1].split(".SH ", 1)[0]
    for cmd, text in h.items():
        for opt in sorted(set(re.findall(r"^\s+(--[a-z][a-z-]*)", text, re.M))):
            # An item of OPTIONS: ".B --opt", ".BI --opt ...", ".B -h ", " --help".
            if not re.search(r"^\.B[IR]? .*?(?<![\w-])%s(?![\w-])" % re.escape(opt), options,
                             re.M):
                problems.append("pyfinguard.1: option %s (pyfinguard %s --help) not under "
                                "OPTIONS" % (opt, cmd or ""))
        for choices in re.findall(r"--\w+ \{([\w,]+)\}", text):
            for c in choices.split(","):
                if c not in page1:
                    problems.append("pyfinguard.1: value %s (pyfinguard %s) missing" % (c, cmd))
    status = h[""].split("exit status:", 1)[1]
    codes = re.findall(r"^  (\d+)\s", status, re.M)
    section = page1.split(".SH EXIT STATUS", 1)[1].split(".SH ", 1)[0]
    for c in codes:
        if not re.search(r"^\.B %s$" % c, section, re.M):
            problems.append("pyfinguard.1: exit status %s missing from EXIT STATUS" % c)

    # docs/deployment.md, "## Settings": | `VAR` | values | default | option |
    with open(os.path.join(REPO, "docs", "deployment.md")) as f:
        dep = f.read()
    table = dep.split("## Settings", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(PYFINGUARD_\w+)` \| (.*?) \| (.*?) \|", table, re.M)
    if len(rows) < 4:
        problems.append("could not read the variables of docs/deployment.md: %r" % rows)
    for var, values, default in rows:
        m = re.search(r"^\.B %s\n(.*?)(?=^\.TP|^\.SH)" % var, page7, re.M | re.S)
        if not m:
            problems.append("pyfinguard-env.7: %s not described" % var)
            continue
        body = m.group(1)
        for v in re.findall(r"`([^`]+)`", values + " " + default.split(":")[0]):
            if v not in body:
                problems.append("pyfinguard-env.7: %s: value %s (deployment.md) missing"
                                % (var, v))
    documented = set(re.findall(r"^\.B (PYFINGUARD_\w+)$", page7, re.M))
    extra = documented - set(r[0] for r in rows)
    if extra:
        problems.append("pyfinguard-env.7 documents %s, deployment.md's table does not"
                        % ", ".join(sorted(extra)))

    groff = shutil.which("groff")
    if groff:
        for name in ("pyfinguard.1", "pyfinguard-env.7"):
            r = subprocess.run([groff, "-man", "-ww", "-z", "-Tutf8", os.path.join(MAN, name)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               universal_newlines=True)
            if r.returncode != 0 or r.stdout.strip():
                problems.append("groff warns about %s: %s" % (name, r.stdout.strip()))
    else:
        print("groff not installed: the pages' roff was not checked")

    for p in problems:
        print("FAIL:", p)
    print("man pages: %d command(s), %d exit status(es), %d variable(s) checked; %d problem(s)"
          % (len(commands), len(codes), len(rows), len(problems)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
