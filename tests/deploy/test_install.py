"""`meson install` into a temporary prefix gives a working pyfinguard: bin/pyfinguard,
lib/.../libpyfinguard.so, include/pyfinguard.h, a pkg-config file, the docs, and the helpers
the launcher's doctor needs; the installed launcher runs from there (and after the prefix
is moved). A fresh configure of the source tree in a temporary build directory, so what is
tested is exactly what a user's `meson setup --prefix ... && meson install` does.
"""
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

import deploy_common as dc

VERSION_CODE = ("import ctypes; f = ctypes.CDLL(None).pyfinguard_version; "
                "f.restype = ctypes.c_char_p; print(f().decode())")


def sh(argv, **kw):
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       universal_newlines=True, **kw)
    if r.returncode != 0:
        raise AssertionError("%s failed (%d):\n%s" % (" ".join(argv), r.returncode,
                                                     r.stdout[-3000:]))
    return r.stdout


def user_env(**kw):
    """A user's environment: no PYFINGUARD_LIBRARY pointing at the build tree."""
    env = dc.base_env(PYFINGUARD_LIBRARY=None)
    env.update(kw)
    return env


class Install(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="pfg-install-")
        cls.prefix = os.path.join(cls.tmp, "prefix")
        bld = os.path.join(cls.tmp, "build")
        meson = shutil.which("meson")
        sh([meson, "setup", "--prefix", cls.prefix, bld, dc.REPO])
        sh([meson, "install", "-C", bld])
        opts = json.loads(sh([meson, "introspect", "--buildoptions", bld]))
        opt = dict((o["name"], o["value"]) for o in opts)
        cls.libdir = os.path.join(cls.prefix, opt["libdir"])
        cls.datadir = os.path.join(cls.prefix, opt["datadir"])
        cls.includedir = os.path.join(cls.prefix, opt["includedir"])
        cls.launcher = os.path.join(cls.prefix, opt["bindir"], "pyfinguard")
        cls.lib = os.path.join(cls.libdir, "libpyfinguard.so")
        # What the installed launcher and pkg-config's `preload` name: the SONAME file,
        # which a runtime package ships without the development link (debian/README.source).
        cls.preload = os.path.join(cls.libdir, "libpyfinguard.so.%s"
                                   % dc.project_version().split(".")[0])
        shutil.rmtree(bld)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_files(self):
        self.assertTrue(os.access(self.launcher, os.X_OK), self.launcher)
        with open(self.launcher) as f:
            text = f.read()
        self.assertTrue(text.startswith("#!/usr/bin/env python3\n"))
        self.assertNotIn("@PYFINGUARD_", text)     # every placeholder substituted
        self.assertTrue(os.path.isfile(os.path.join(self.includedir, "pyfinguard.h")))
        self.assertTrue(os.path.isfile(os.path.realpath(self.lib)), self.lib)
        self.assertEqual(os.path.realpath(self.preload), os.path.realpath(self.lib))
        for man in ("man1/pyfinguard.1", "man7/pyfinguard-env.7"):
            self.assertTrue(os.path.isfile(os.path.join(self.datadir, "man", man)), man)
        share = os.path.join(self.datadir, "pyfinguard")
        for f in ("tools/pfgpy/__init__.py", "tools/pfgpy/build.py",
                  "tools/pfgpy/interpreters.py", "tools/pfgpy/doctor.py",
                  "tools/pfgpy/demo.py", "tools/pfgpy/c/pfgtest.c",
                  "tools/pfgpy/c/late_ensure.c", "tools/pfgpy/c/doctor_host.c",
                  "tools/pfgpy/c/scen.h"):
            self.assertTrue(os.path.isfile(os.path.join(share, f)), f)
        # Nothing of the tests is installed.
        self.assertFalse(os.path.exists(os.path.join(share, "tests")))

    def test_docs(self):
        docdir = os.path.join(self.datadir, "doc", "pyfinguard")
        want = sorted(os.path.basename(p) for p in glob.glob(os.path.join(dc.REPO, "docs",
                                                                          "*.md")))
        have = sorted(os.listdir(docdir)) if os.path.isdir(docdir) else []
        self.assertIn("deployment.md", want)
        self.assertEqual([w for w in want if w not in have], [],
                         "docs/*.md not installed to %s" % docdir)

    def test_pkg_config(self):
        pc = shutil.which("pkg-config")
        if not pc:
            self.skipTest("pkg-config not installed")
        env = user_env(PKG_CONFIG_PATH=os.path.join(self.libdir, "pkgconfig"))
        self.assertEqual(sh([pc, "--modversion", "pyfinguard"], env=env).strip(),
                         dc.project_version())
        preload = sh([pc, "--variable=preload", "pyfinguard"], env=env).strip()
        self.assertEqual(preload, self.preload)
        flags = sh([pc, "--cflags", "--libs", "pyfinguard"], env=env).split()
        self.assertIn("-I" + self.includedir, flags)
        # A program built with those flags finds the header and links the library.
        src = os.path.join(self.tmp, "use.c")
        exe = os.path.join(self.tmp, "use")
        with open(src, "w") as f:
            f.write('#include <pyfinguard.h>\n#include <stdio.h>\n'
                    'int main(void) { puts(pyfinguard_version()); return 0; }\n')
        sh(["cc", src, "-o", exe] + flags)
        out = sh([exe], env=user_env(LD_LIBRARY_PATH=self.libdir))
        self.assertEqual(out.strip(), dc.project_version())

    def test_launcher_env(self):
        out = sh([self.launcher, "env"], env=user_env())
        self.assertIn("export LD_PRELOAD=%s\"${LD_PRELOAD:+:$LD_PRELOAD}\"" % self.preload, out)

    def test_launcher_without_dev_link(self):
        # A runtime package has no libpyfinguard.so link: the launcher uses the SONAME file.
        os.rename(self.lib, self.lib + ".away")
        try:
            out = sh([self.launcher, "run", "--", "printenv", "LD_PRELOAD"], env=user_env())
        finally:
            os.rename(self.lib + ".away", self.lib)
        self.assertEqual(out.strip(), self.preload)

    def test_no_test_files(self):
        # Only the sources of doctor's live checks come from tests/ (tools/meson.build).
        found = []
        for d, _, files in os.walk(self.prefix):
            found += [os.path.relpath(os.path.join(d, f), self.prefix) for f in files]
        share_tests = os.path.join(os.path.relpath(self.datadir, self.prefix), "pyfinguard",
                                   "tests", "scenarios")
        allowed = set(os.path.join(share_tests, f) for f in
                      ("pfgtest.c", "late_ensure.c", "doctor_host.c", "scen.h"))
        bad = [f for f in found if f not in allowed and
               ("test" in f.split(os.sep) or "tests" in f.split(os.sep) or "test_" in f)]
        self.assertEqual(bad, [])

    def test_launcher_run(self):
        out = sh([self.launcher, "run", "--", sys.executable, "-c", VERSION_CODE],
                 env=user_env())
        self.assertEqual(out.strip(), dc.project_version())

    def test_launcher_doctor(self):
        # The live check compiles pfgtest from share/pyfinguard, not from the source tree.
        py = dc.interp(lambda i: i.kind == "shared-lib exe", "a shared-libpython python")
        out = sh([self.launcher, "doctor", py.executable],
                 env=user_env(PFGPY_BUILD_DIR=os.path.join(self.tmp, "pfgpy")), timeout=300)
        self.assertIn("coverage: complete", out)
        # Parked, or ended as this CPython ends late threads (docs/design.md).
        self.assertRegex(out, r"with guard     exit 0, 1 thread (parked|ended \(pthread_exit\))")
        built = glob.glob(os.path.join(self.tmp, "pfgpy", "*", "pfgtest-*", "pfgtest*.so"))
        self.assertTrue(built, "pfgtest was not built from the installed sources")
        with open(glob.glob(os.path.join(self.tmp, "pfgpy", "*", "pfgtest-*",
                                         "pfgtest*.so.cmd"))[0]) as f:
            self.assertIn(os.path.join(self.datadir, "pyfinguard"), f.read())

    def test_launcher_doctor_libpython(self):
        # The embedder doctor --libpython builds is pfgpy/c/doctor_host.c from share/pyfinguard.
        it = dc.interp(lambda i: i.kind == "embed-only", "an embed-only libpython")
        out = sh([self.launcher, "doctor", "--libpython", it.libpython, "--no-live"],
                 env=user_env(PFGPY_BUILD_DIR=os.path.join(self.tmp, "pfgpy")), timeout=300)
        self.assertIn("result: OK: coverage complete for both ways of loading", out)

    def test_launcher_demo_embedder(self):
        # An embed-only libpython runs pfgpy/c/late_ensure.c from share/pyfinguard.
        it = dc.interp(lambda i: i.kind == "embed-only", "an embed-only libpython")
        out = sh([self.launcher, "demo", "--python", it.name],
                 env=user_env(PFGPY_BUILD_DIR=os.path.join(self.tmp, "pfgpy")), timeout=300)
        self.assertRegex(out, r"\(embedder\) \| killed by SIGSEGV \| exit 7, 1 thread "
                              r"(parked|ended \(pthread_exit\))")

    def test_relocated_prefix(self):
        # The launcher finds the library relative to itself first, so a moved prefix (or a
        # `meson install --destdir` staging tree) still works.
        moved = os.path.join(self.tmp, "moved")
        shutil.copytree(self.prefix, moved, symlinks=True)
        try:
            launcher = os.path.join(moved, os.path.relpath(self.launcher, self.prefix))
            lib = os.path.join(moved, os.path.relpath(self.preload, self.prefix))
            out = sh([launcher, "run", "--", "printenv", "LD_PRELOAD"], env=user_env())
            self.assertEqual(out.strip(), lib)
        finally:
            shutil.rmtree(moved)


if __name__ == "__main__":
    unittest.main()
