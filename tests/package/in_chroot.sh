#!/bin/sh
# "COND && ok ... || fail ...": ok only echoes and always succeeds.
# shellcheck disable=SC2015
# Runs inside the clean Debian 12 chroot of test_package.sh, which copies it to
# /tmp/pfg-package/ with the .debs and late_reader.py; nothing of the source tree is there.
# Installs the packages with apt (dependencies from the archive), then checks, from the
# installed files only: the launcher on PATH, `pyfinguard run -- python3 -c <late_reader>`,
# `pyfinguard doctor`, the pkg-config file of pyfinguard-dev, the man pages.
#
#   in_chroot.sh TRIPLET VERSION SOURCE_TREE_PATH
set -u
triplet="$1" version="$2" srcpath="$3"
d=/tmp/pfg-package
lib="/usr/lib/$triplet/libpyfinguard.so.0"
fails=0
ok() { echo "package: ok: $*"; }
fail() { echo "package: FAIL: $*"; fails=$((fails + 1)); }

if [ -e "$srcpath" ]; then
  fail "the source tree $srcpath is visible in the chroot"
fi
t0=$(date +%s)
apt-get update -qq >/dev/null 2>&1 || echo "package: apt-get update failed (stale lists used)"
if ! apt-get install -y -q "$d"/pyfinguard_*.deb "$d"/pyfinguard-dev_*.deb >"$d/apt.log" 2>&1; then
  tail -n 20 "$d/apt.log"
  echo "package: FAIL: apt-get install of the .debs failed"
  exit 1
fi
echo "package: installed with apt in $(( $(date +%s) - t0 )) s:" \
  "$(dpkg-query -W -f '${Package} ${Version}, ' pyfinguard pyfinguard-dev libunwind8 libzydis4.0 2>/dev/null)"

[ "$(command -v pyfinguard)" = /usr/bin/pyfinguard ] && ok "pyfinguard on PATH" ||
  fail "pyfinguard not on PATH as /usr/bin/pyfinguard: $(command -v pyfinguard)"
[ "$(readlink -f "$lib")" = "/usr/lib/$triplet/libpyfinguard.so.$version" ] &&
  ok "$lib -> libpyfinguard.so.$version" || fail "$lib is not libpyfinguard.so.$version"
v=$(pyfinguard --version 2>&1)
[ "$v" = "pyfinguard $version" ] && ok "$v" || fail "pyfinguard --version: $v"

# The daemon thread blocked in os.read at exit, woken after finalization.
echo "package: pyfinguard run --log stderr -- python3 -c \"\$(cat late_reader.py)\""
pyfinguard run --log stderr -- python3 -c "$(cat "$d/late_reader.py")" >"$d/run.out" 2>"$d/run.err"
rc=$?
sed 's/^/  out: /' "$d/run.out"; grep -v '^pyfinguard:   #' "$d/run.err" | sed 's/^/  err: /'
[ "$rc" = 42 ] && ok "exit status 42, the program's own" || fail "exit status $rc, not 42"
grep -qx "guard mapped: /usr/lib/$triplet/libpyfinguard.so.$version" "$d/run.out" &&
  ok "the guard mapped from /usr/lib/$triplet" || fail "the guard was not mapped from /usr/lib/$triplet"
grep -qx "LD_PRELOAD: $lib" "$d/run.out" && ok "LD_PRELOAD=$lib" || fail "LD_PRELOAD is not $lib"
# Debian 12's python3.11 ends such a thread itself (pthread_exit), and so does the guard;
# it parks where CPython would not end it (docs/design.md, "Ending or parking").
grep -Eq '^pyfinguard: (parked|ended) thread [0-9]* ' "$d/run.err" && ok "the woken reader was stopped" ||
  fail "no parked- or ended-thread report"
grep -Eq '^pyfinguard: (1 thread parked after Python finalization began|0 threads parked after Python finalization began, 0 still present at exit, 1 ended )' "$d/run.err" &&
  ok "exit summary: 1 thread parked or ended" || fail "no exit summary naming 1 parked or ended thread"
grep -q 'reader: ran Python' "$d/run.out" && fail "the reader ran Python after finalization"
# For comparison (not asserted): the same program without the guard.
python3 -c "$(cat "$d/late_reader.py")" >/dev/null 2>&1
echo "package: without the guard the program exits with status $?"

echo "package: pyfinguard doctor"
PFGPY_BUILD_DIR="$d/pfgpy" pyfinguard doctor >"$d/doctor.out" 2>&1
rc=$?
sed 's/^/  /' "$d/doctor.out"
[ "$rc" = 0 ] && ok "doctor exit 0" || fail "doctor exit $rc"
grep -q "^  library      $lib\$" "$d/doctor.out" && ok "doctor used $lib" ||
  fail "doctor's library is not $lib"
grep -q '^coverage: complete' "$d/doctor.out" && ok "coverage complete" || fail "coverage not complete"
grep -q '^result: OK' "$d/doctor.out" && ok "doctor result OK" || fail "doctor result not OK"

# pyfinguard-dev: pkg-config names the file to preload; a program links the library.
p=$(pkg-config --variable=preload pyfinguard 2>&1)
[ "$p" = "$lib" ] && ok "pkg-config preload=$p" || fail "pkg-config preload: $p"
printf '#include <pyfinguard.h>\n#include <stdio.h>\nint main(void) { puts(pyfinguard_version()); return 0; }\n' >"$d/use.c"
# shellcheck disable=SC2046
if cc "$d/use.c" -o "$d/use" $(pkg-config --cflags --libs pyfinguard) 2>"$d/cc.err"; then
  out=$("$d/use")
  [ "$out" = "$version" ] && ok "a program built with pkg-config's flags prints $out" ||
    fail "the linked program printed '$out'"
else
  cat "$d/cc.err"; fail "cc with pkg-config --cflags --libs pyfinguard failed"
fi

# pyfinguard-dev's <pyfinguard/pep788.h> (docs/pep788.md): one extension binary, built with
# pkg-config's flags, uses the guard's PEP 788 when it is preloaded and the fallback when not.
cat >"$d/pep788mod.c" <<'EOF_C'
#include <Python.h>
#include <pyfinguard/pep788.h>
static PyObject *backend(PyObject *s, PyObject *a) {
  (void)s; (void)a;
  PyfgInterpreterGuard *g = PyfgInterpreterGuard_FromCurrent();
  if (!g) return PyLong_FromLong(-1);
  PyfgInterpreterGuard_Close(g);
  return PyLong_FromLong(PyfgPEP788_Backend());
}
static PyMethodDef m[] = {{"backend", backend, METH_NOARGS, NULL}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef mod = {PyModuleDef_HEAD_INIT, "pep788mod", NULL, -1, m, NULL, NULL, NULL, NULL};
PyMODINIT_FUNC PyInit_pep788mod(void) { return PyModule_Create(&mod); }
EOF_C
ext="$d/pep788mod$(python3 -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')"
# shellcheck disable=SC2046
if cc -shared -fPIC "$d/pep788mod.c" -o "$ext" $(pkg-config --cflags pyfinguard) \
     -I"$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["include"])')" 2>"$d/cc.err"; then
  without=$(PYTHONPATH="$d" python3 -c 'import pep788mod; print(pep788mod.backend())' 2>&1)
  with=$(PYTHONPATH="$d" LD_PRELOAD="$lib" python3 -c 'import pep788mod; print(pep788mod.backend())' 2>&1)
  [ "$without" = 0 ] && [ "$with" = 2 ] && ok "a PEP 788 extension: the fallback without the guard, the guard's with it" ||
    fail "the PEP 788 extension printed '$without' without the guard, '$with' with it (want 0, 2)"
else
  cat "$d/cc.err"; fail "cc of an extension including <pyfinguard/pep788.h> failed"
fi

for f in /usr/share/man/man1/pyfinguard.1.gz /usr/share/man/man7/pyfinguard-env.7.gz \
         /usr/share/doc/pyfinguard/deployment.md.gz /usr/share/doc/pyfinguard/copyright; do
  [ -f "$f" ] && ok "$f" || fail "$f missing"
done

echo "package: $fails failure(s) in the chroot"
[ "$fails" = 0 ]
