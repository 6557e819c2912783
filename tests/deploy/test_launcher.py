"""tools/pyfinguard, run as a user runs it (through its shebang), against the real library.

    python3 tests/deploy/test_launcher.py [-v] [TestClass.test_name]
"""
import glob
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import unittest

import deploy_common as dc

LIB = dc.library()
# A real library to stand for "something the user already preloads": ld.so must be able to
# load it, or it prints an error for every process.
OTHER = (glob.glob("/lib/x86_64-linux-gnu/libm.so.6") + glob.glob("/lib*/libm.so.6") +
         glob.glob("/usr/lib*/libm.so.6"))[0]
VERSION_CODE = ("import ctypes; f = ctypes.CDLL(None).pyfinguard_version; "
                "f.restype = ctypes.c_char_p; print(f().decode())")


def preload_of(env_snippet_env):
    return env_snippet_env.get("LD_PRELOAD", "")


class Run(unittest.TestCase):
    def test_exit_status_passes_through(self):
        for code in (0, 1, 7, 255):
            r = dc.launch(["run", "--", "sh", "-c", "exit %d" % code])
            self.assertEqual(r.returncode, code, r.stderr)

    def test_signal_passes_through(self):
        # run execs CMD, so the process the caller waits for is CMD itself: killed by the
        # same signal, not an exit status 128+N made up by a wrapper.
        for sig in (signal.SIGSEGV, signal.SIGTERM, signal.SIGABRT):
            r = dc.launch(["run", "--", "sh", "-c", "kill -%d $$" % sig])
            self.assertEqual(r.returncode, -sig, "%s: %s" % (sig, r.stderr))

    def test_exec_keeps_pid(self):
        p = subprocess.Popen([dc.LAUNCHER, "run", "--", "sh", "-c", "echo $$"],
                             env=dc.base_env(), stdout=subprocess.PIPE,
                             universal_newlines=True)
        out, _ = p.communicate(timeout=60)
        self.assertEqual(int(out.strip()), p.pid)

    def test_without_double_dash(self):
        r = dc.launch(["run", "--mode", "exit", "sh", "-c", 'echo "$PYFINGUARD_MODE" "$@"',
                       "sh", "--mode", "x"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), "exit --mode x")

    def preload_after(self, existing):
        env = dc.base_env(LD_PRELOAD=existing)
        r = dc.launch(["run", "--", "printenv", "LD_PRELOAD"], env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout.strip()

    def test_preload_prepended(self):
        self.assertEqual(self.preload_after(None), LIB)
        self.assertEqual(self.preload_after(""), LIB)
        self.assertEqual(self.preload_after(OTHER), LIB + ":" + OTHER)
        # ld.so accepts spaces too; the guard is not repeated when already present.
        self.assertEqual(self.preload_after("%s %s" % (OTHER, LIB)), LIB + ":" + OTHER)
        self.assertEqual(self.preload_after("%s:%s" % (LIB, OTHER)), LIB + ":" + OTHER)
        # Another copy of the guard (e.g. an installed one) is dropped: two guards in one
        # process would both interpose.
        self.assertEqual(self.preload_after("/opt/x/libpyfinguard.so.0:" + OTHER),
                         LIB + ":" + OTHER)

    def test_options_set_guard_variables(self):
        tmp = tempfile.mkdtemp()
        try:
            env = dc.base_env(PYFINGUARD_MODE="abort")
            r = dc.launch(["run", "--mode", "exit", "--log", "g.log", "--quiet", "--",
                           "sh", "-c", 'echo "$PYFINGUARD_MODE|$PYFINGUARD_LOG|'
                           '$PYFINGUARD_QUIET"'], env=env, cwd=tmp)
            self.assertEqual(r.returncode, 0, r.stderr)
            # --log is made absolute: the command may change directory.
            self.assertEqual(r.stdout.strip(), "exit|%s|1" % os.path.join(
                os.path.realpath(tmp), "g.log"))
        finally:
            shutil.rmtree(tmp)

    def test_guard_is_loaded(self):
        r = dc.launch(["run", "--", sys.executable, "-c", VERSION_CODE])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), dc.project_version())

    def test_command_not_found(self):
        r = dc.launch(["run", "--", "/nonexistent/pfg-cmd"])
        self.assertEqual(r.returncode, 127)
        self.assertIn("not found", r.stderr)

    def test_command_not_executable(self):
        with tempfile.NamedTemporaryFile(suffix=".sh") as f:
            r = dc.launch(["run", "--", f.name])
        self.assertEqual(r.returncode, 126)
        self.assertIn("error:", r.stderr)

    def test_library_missing(self):
        for args in (["run", "--", "true"], ["env"], ["doctor", "--no-live"], ["demo"]):
            r = dc.launch(args, env=dc.base_env(PYFINGUARD_LIBRARY="/nonexistent/libpyfinguard.so"))
            self.assertEqual(r.returncode, 3, "%s: %s" % (args, r.stderr))
            self.assertIn("PYFINGUARD_LIBRARY", r.stderr)


    def test_library_path_ld_preload_cannot_express(self):
        tmp = tempfile.mkdtemp(suffix=":x")
        try:
            link = os.path.join(tmp, "libpyfinguard.so")
            os.symlink(LIB, link)
            r = dc.launch(["run", "--", "true"], env=dc.base_env(PYFINGUARD_LIBRARY=link))
            self.assertEqual(r.returncode, 3, r.stderr)
            self.assertIn("LD_PRELOAD cannot express", r.stderr)
        finally:
            shutil.rmtree(tmp)


class Reproducers(unittest.TestCase):
    """The guard through the launcher on Debian's static python3.11 (the issue's
    acceptance: `pyfinguard run -- /usr/bin/python3.11 <pybind11 reproducer>`)."""

    @classmethod
    def setUpClass(cls):
        cls.py = dc.debian_python()
        cls.path = dc.build.build_pfgtest(cls.py)
        try:
            cls.path += ":" + dc.build.build_pfgbind(cls.py)
            cls.pybind = None
        except dc.build.Unsupported as e:
            cls.pybind = str(e)

    def run_py(self, launcher_args, code_or_file, tmp):
        env = dc.base_env(PYTHONPATH=self.path)
        argv = [self.py.executable] + ([code_or_file] if code_or_file.endswith(".py")
                                       else ["-c", code_or_file])
        if launcher_args is None:
            return subprocess.run(argv, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, universal_newlines=True,
                                  timeout=60, preexec_fn=dc.no_core)
        return dc.launch(["run"] + launcher_args + ["--"] + argv, env=env, cwd=tmp)

    def test_pybind11_gil_scoped_release(self):
        if self.pybind:
            self.skipTest(self.pybind)
        script = os.path.join(dc.HERE, "pybind11_reproducer.py")
        tmp = tempfile.mkdtemp()
        try:
            plain = self.run_py(None, script, tmp)
            self.assertEqual(plain.returncode, -signal.SIGABRT,
                             "without the guard: " + plain.stderr)
            r = self.run_py(["--log", "report.log"], script, tmp)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn("STATE pybind11-worker parked", r.stdout)
            with open(os.path.join(tmp, "report.log")) as f:
                report = f.read()
            # One report naming the API, with a backtrace into the pybind11 module.
            # Ended as CPython 3.11 ends a late thread, until the unwind reached the
            # noexcept gil_scoped_release destructor: parked there (docs/design.md).
            self.assertRegex(report, r"pyfinguard: (parked|ended) thread \d+ '[^']*' in "
                                     r"PyEval_RestoreThread \(generation 1, ")
            if "pyfinguard: ended thread" in report:
                self.assertIn("its unwind reached a frame that may not throw", report)
            self.assertRegex(report, r"pyfinguard:   #\d+ 0x[0-9a-f]+ .*pfgbind")
            self.assertRegex(r.stderr, r"pyfinguard: 1 thread(\(s\))? parked after Python "
                                       r"finalization")
        finally:
            shutil.rmtree(tmp)

    def test_mode_and_quiet_reach_the_guard(self):
        tmp = tempfile.mkdtemp()
        try:
            code = "import pfgtest; pfgtest.late_ensure()"
            r = self.run_py([], code, tmp)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("parked after Python finalization", r.stderr)
            r = self.run_py(["--quiet", "--log", "q.log"], code, tmp)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertNotIn("parked after Python finalization", r.stderr)
            r = self.run_py(["--mode", "abort"], code, tmp)
            self.assertEqual(r.returncode, -signal.SIGABRT, r.stderr)
        finally:
            shutil.rmtree(tmp)

    def test_strict_and_report_format_reach_the_guard(self):
        tmp = tempfile.mkdtemp()
        try:
            code = "import pfgtest; pfgtest.late_ensure()"
            r = self.run_py(["--strict", "9", "--report-format", "json"], code, tmp)
            self.assertEqual(r.returncode, 9, r.stderr)
            events = [json.loads(l)["event"] for l in r.stderr.splitlines()]
            self.assertEqual(events, ["park", "exit", "strict"], r.stderr)
        finally:
            shutil.rmtree(tmp)


class Env(unittest.TestCase):
    SETTINGS = ["--mode", "exit", "--log", "/tmp/pfg dir/it's.log", "--quiet"]
    WANT = {"PYFINGUARD_MODE": "exit", "PYFINGUARD_LOG": "/tmp/pfg dir/it's.log",
            "PYFINGUARD_QUIET": "1"}

    def snippet(self, fmt, extra=()):
        r = dc.launch(["env", "--format", fmt] + list(extra))
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout

    def guard_active(self, env):
        """Apply an environment parsed from a snippet to a real process: is the guard in?"""
        full = dc.base_env(PYFINGUARD_LIBRARY=None)
        full.update(env)
        r = subprocess.run([sys.executable, "-c", VERSION_CODE], env=full,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           universal_newlines=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), dc.project_version())

    def test_default_is_shell(self):
        self.assertEqual(self.snippet("shell"), dc.launch(["env"]).stdout)

    def test_shell(self):
        for sh in ("bash", "dash"):
            if not shutil.which(sh):
                continue
            for existing in (None, OTHER):
                # Evaluated twice, as a nested shell re-reading its profile would: the
                # guard must still appear once.
                script = ('eval "$(%s env %s)"; eval "$(%s env)"; printf "%%s\\n" "$LD_PRELOAD" '
                          '"$PYFINGUARD_MODE" "$PYFINGUARD_LOG" "$PYFINGUARD_QUIET"; '
                          'exec %s -c %s' % (shlex.quote(dc.LAUNCHER),
                                             " ".join(shlex.quote(a) for a in self.SETTINGS),
                                             shlex.quote(dc.LAUNCHER),
                                             shlex.quote(sys.executable),
                                             shlex.quote(VERSION_CODE)))
                r = subprocess.run([sh, "-c", script], env=dc.base_env(LD_PRELOAD=existing),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   universal_newlines=True, timeout=60)
                self.assertEqual(r.returncode, 0, r.stderr)
                lines = r.stdout.splitlines()
                self.assertEqual(lines[0], LIB + (":" + existing if existing else ""), sh)
                self.assertEqual(lines[1:4], ["exit", "/tmp/pfg dir/it's.log", "1"])
                self.assertEqual(lines[4], dc.project_version())

    def test_systemd(self):
        text = self.snippet("systemd", self.SETTINGS)
        env, section = {}, None
        for line in text.splitlines():
            if not line.strip() or line.startswith(("#", ";")):
                continue
            if line.startswith("["):
                section = line.strip()
                continue
            self.assertEqual(section, "[Service]", line)
            key, _, value = line.partition("=")
            self.assertEqual(key, "Environment", line)
            # systemd unquotes "..." with C escapes and expands %% to %.
            for word in shlex.split(value.replace("%%", "%")):
                k, _, v = word.partition("=")
                env[k] = v
        self.assertEqual(env.pop("LD_PRELOAD"), LIB)
        self.assertEqual(env, self.WANT)
        self.guard_active({"LD_PRELOAD": LIB})
        # systemd's own parser, when present: a drop-in for a throwaway unit must load
        # without "ignoring" complaints about our lines.
        sa = shutil.which("systemd-analyze")
        if sa:
            tmp = tempfile.mkdtemp()
            try:
                unit = os.path.join(tmp, "pfg-deploy-test.service")
                with open(unit, "w") as f:
                    f.write("[Unit]\nDescription=t\n[Service]\nExecStart=/bin/true\n" + text)
                r = subprocess.run([sa, "verify", unit], stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, universal_newlines=True,
                                   timeout=60)
                bad = [l for l in r.stdout.splitlines() if "pfg-deploy-test.service:" in l]
                self.assertEqual(bad, [], r.stdout)
            finally:
                shutil.rmtree(tmp)

    def test_docker(self):
        text = self.snippet("docker", self.SETTINGS)
        env = {}
        for line in text.splitlines():
            if not line.strip() or line.startswith("#"):
                continue
            self.assertTrue(line.startswith("ENV "), line)
            # Dockerfile ENV key=value: shell-like quoting of the value.
            for word in shlex.split(line[4:]):
                k, _, v = word.partition("=")
                env[k] = v
        self.assertEqual(env.pop("LD_PRELOAD"), LIB)
        self.assertEqual(env, self.WANT)
        self.guard_active({"LD_PRELOAD": LIB})

    def test_buildbot(self):
        text = self.snippet("buildbot", self.SETTINGS)
        ns = {}
        exec(compile(text, "master.cfg fragment", "exec"), ns)
        env = dict(ns["PYFINGUARD_ENV"])
        # The worker replaces ${LD_PRELOAD} with its own value (buildbot_worker.runprocess);
        # test_buildbot.py runs it for real.
        pre = env.pop("LD_PRELOAD")
        self.assertEqual(pre.split()[0], LIB)
        self.assertEqual(re.sub(r"\$\{LD_PRELOAD\}", OTHER, pre).split(), [LIB, OTHER])
        self.assertEqual(env, self.WANT)
        self.guard_active({"LD_PRELOAD": re.sub(r"\$\{LD_PRELOAD\}", "", pre)})


    KUBE = SETTINGS + ["--strict", "3", "--report-format", "json",
                       "--syslog-socket", "/run/pfg $(dir)/log"]
    KUBE_WANT = dict(WANT, PYFINGUARD_STRICT="3", PYFINGUARD_REPORT_FORMAT="json",
                     PYFINGUARD_SYSLOG_SOCKET="/run/pfg $(dir)/log")

    def test_kubernetes(self):
        text = self.snippet("kubernetes", self.KUBE)
        # Structurally, always: "env:", then "- name: NAME" / "  value: <JSON string>"
        # pairs (a JSON string is a YAML double-quoted scalar).
        lines = [l for l in text.splitlines() if l.strip() and not l.startswith("#")]
        self.assertEqual(lines[0], "env:")
        items = []
        for name, value in zip(lines[1::2], lines[2::2]):
            m = re.match(r"^- name: ([A-Z_]+)$", name)
            self.assertTrue(m, name)
            self.assertTrue(value.startswith('  value: "'), value)
            items.append({"name": m.group(1), "value": json.loads(value[len("  value: "):])})
        self.assertEqual(len(lines), 1 + 2 * len(items))
        # And with a YAML parser when there is one (python3-yaml): the same list.
        try:
            import yaml
        except ImportError:
            yaml = None
        if yaml is not None:
            self.assertEqual(yaml.safe_load(text), {"env": items})
        for it in items:
            self.assertEqual(sorted(it), ["name", "value"])
            # Kubernetes wants strings (an unquoted 3 is an int and is rejected).
            self.assertIsInstance(it["value"], str)
        # Kubernetes expands $(VAR) in values and turns $$ into $.
        env = {it["name"]: it["value"].replace("$$", "$") for it in items}
        self.assertEqual(items[0]["name"], "LD_PRELOAD")
        self.assertEqual(env.pop("LD_PRELOAD"), LIB)
        self.assertEqual(env, self.KUBE_WANT)
        self.guard_active({"LD_PRELOAD": LIB})

    def test_buildbot_strict(self):
        plain = self.snippet("buildbot")
        self.assertIn("--strict 3", plain)  # the CI hint, when not asked for
        text = self.snippet("buildbot", ["--strict", "3"])
        ns = {}
        exec(compile(text, "master.cfg fragment", "exec"), ns)
        self.assertEqual(ns["PYFINGUARD_ENV"]["PYFINGUARD_STRICT"], "3")
        self.assertNotIn("--strict 3", text)


class Usage(unittest.TestCase):
    def test_bad_options_exit_2(self):
        for args in ([], ["frob"], ["--frob"], ["run"], ["run", "--bogus", "--", "true"],
                     ["run", "--mode", "nap", "--", "true"], ["run", "--log"],
                     ["env", "--format", "xml"], ["env", "extra"], ["env", "--", "x"],
                     ["env", "--strict", "0"], ["env", "--strict", "256"], ["env", "--strict", "x"],
                     ["env", "--report-format", "xml"], ["env", "--syslog-socket", "dev/log"],
                     ["run", "--strict", "-1", "--", "true"],
                     ["doctor", "--bogus"], ["doctor", "a", "b"], ["demo", "--timeout", "x"],
                     ["demo", "--bogus"]):
            r = dc.launch(args)
            self.assertEqual(r.returncode, 2, "%s: %s" % (args, r.stderr))
            self.assertIn("error:", r.stderr, args)
            self.assertIn("usage:", r.stderr, args)
            self.assertEqual(r.stdout, "", args)

    def test_help(self):
        for args in (["--help"], ["run", "--help"], ["env", "--help"], ["doctor", "--help"],
                     ["demo", "--help"]):
            r = dc.launch(args)
            self.assertEqual(r.returncode, 0, args)
            self.assertIn("usage: pyfinguard", r.stdout, args)
            self.assertIn("exit status:", r.stdout, args)

    def test_version(self):
        r = dc.launch(["--version"])
        self.assertEqual(r.returncode, 0)
        self.assertEqual(r.stdout.strip(), "pyfinguard " + dc.project_version())


class Doctor(unittest.TestCase):
    def test_static_debian_python(self):
        py = dc.debian_python()
        r = dc.launch(["doctor", py.executable], timeout=300)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("coverage: complete", r.stdout)
        self.assertRegex(r.stdout, r"PyGILState_Ensure +entry-patch")
        self.assertRegex(r.stdout, r"without guard +killed by SIGSEGV")
        # Parked, or ended as CPython 3.11 ends a late thread (docs/design.md).
        self.assertRegex(r.stdout, r"with guard +exit 0, 1 thread (parked|ended \(pthread_exit\))")

    def test_incomplete_coverage_fails(self):
        # Without entry patches nothing reaches the guard in the static python: doctor must
        # say so, and its live check must show the crash it did not prevent.
        py = dc.debian_python()
        r = dc.launch(["doctor", py.executable], env=dc.base_env(PYFINGUARD_PATCH="off"),
                      timeout=300)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertRegex(r.stdout, r"coverage: INCOMPLETE \(not covered: .*PyGILState_Ensure")
        self.assertRegex(r.stdout, r"with guard +killed by SIGSEGV")
        self.assertIn("result: FAIL", r.stdout)

    DEBIAN_LIBPYTHON = "/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0"

    def test_libpython_of_an_embedder(self):
        if not os.path.isfile(self.DEBIAN_LIBPYTHON):
            self.skipTest("no Debian libpython3.11 on this machine")
        r = dc.launch(["doctor", "--libpython", self.DEBIAN_LIBPYTHON], timeout=300)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(r.stdout.count("coverage:    complete"), 2, r.stdout)
        # Each late thread parked, or ended as this CPython ends it (STATE gone).
        self.assertEqual(len(re.findall(r"with guard +exit 7, (2 threads parked|2 threads ended "
                                        r"\(pthread_exit\)|1 thread parked, 1 thread ended "
                                        r"\(pthread_exit\)) \(daemon (parked|gone), native "
                                        r"(parked|gone)\)", r.stdout)), 2, r.stdout)
        self.assertIn("not checked:", r.stdout)
        self.assertIn("result: OK", r.stdout)

    def test_libpython_incomplete_is_not_complete(self):
        # -fno-semantic-interposition: without entry patches the library's own calls
        # bypass the guard. Doctor must say so and never call it complete.
        if not os.path.isfile(self.DEBIAN_LIBPYTHON):
            self.skipTest("no Debian libpython3.11 on this machine")
        r = dc.launch(["doctor", "--libpython", self.DEBIAN_LIBPYTHON],
                      env=dc.base_env(PYFINGUARD_PATCH="off"), timeout=300)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertNotIn("complete\n", r.stdout.replace("INCOMPLETE", ""))
        self.assertIn("result: FAIL", r.stdout)

    def test_unsupported_python(self):
        old = [i for i in dc.interps() if i.version and i.version < (3, 6) and i.executable]
        if not old:
            self.skipTest("no Python < 3.6 on this machine")
        r = dc.launch(["doctor", old[0].executable])
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("is not supported (pyfinguard guards CPython 3.6+)", r.stdout)

    def test_default_is_python3_on_path(self):
        r = dc.launch(["doctor", "--no-live"])
        self.assertIn(r.returncode, (0, 1), r.stderr)
        real = subprocess.run(["python3", "-c", "import sys; print(sys.executable)"],
                              stdout=subprocess.PIPE, universal_newlines=True).stdout.strip()
        self.assertIn("(%s)" % real, r.stdout)

    def test_guard_absent_is_a_failure(self):
        # A "library" that is not the guard: doctor must notice, not report coverage.
        r = dc.launch(["doctor", "--no-live", sys.executable],
                      env=dc.base_env(PYFINGUARD_LIBRARY=OTHER))
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("the guard is not active", r.stdout)

    def test_not_a_python(self):
        for target in ("/nonexistent/python3", "/bin/true"):
            r = dc.launch(["doctor", target])
            self.assertEqual(r.returncode, 4, r.stdout + r.stderr)
            self.assertIn("cannot examine", r.stderr)


class Demo(unittest.TestCase):
    def test_demo_cannot_build(self):
        py = dc.debian_python()
        tmp = tempfile.mkdtemp()
        try:
            r = dc.launch(["demo", "--python", py.executable],
                          env=dc.base_env(CC="/bin/false", PFGPY_BUILD_DIR=tmp), timeout=300)
        finally:
            shutil.rmtree(tmp)
        self.assertEqual(r.returncode, 4, r.stdout + r.stderr)
        self.assertIn("| build failed", r.stdout)

    def test_demo_reports_failure(self):
        py = dc.debian_python()
        r = dc.launch(["demo", "--python", py.executable],
                      env=dc.base_env(PYFINGUARD_PATCH="off"), timeout=300)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertRegex(r.stdout, r"killed by SIGSEGV \| killed by SIGSEGV  <- FAILED")

    def test_demo_every_interpreter(self):
        r = dc.launch(["demo"], timeout=600)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        rows = {}
        for line in r.stdout.splitlines():
            cells = [c.strip() for c in line.split(" | ")]
            if len(cells) == 3 and cells[0] != "interpreter":
                rows[cells[0]] = cells[1:]
        ran = 0
        for it in dc.interps():
            name = it.name + (" (embedder)" if it.kind == "embed-only" else "")
            self.assertIn(name, rows, r.stdout)
            without, with_ = rows[name]
            if it.skip:
                self.assertEqual(without, "skipped", it.name)
                continue
            ran += 1
            # Every supported CPython crashes on this scenario (reference facts table).
            self.assertEqual(without, "killed by SIGSEGV", it.name)
            expect = "exit 7" if it.kind == "embed-only" else "exit 0"
            self.assertIn(with_, (expect + ", 1 thread parked",
                                  expect + ", 1 thread ended (pthread_exit)"), it.name)
        self.assertGreater(ran, 0)


if __name__ == "__main__":
    unittest.main()
