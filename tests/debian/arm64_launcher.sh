#!/bin/sh
# pyfinguard demo and doctor on a Debian arm64 sysroot under qemu-user, as a user runs them
# (docs/deployment.md, "Other architectures"):
#
#   tools/debian-env ENV run tools/pyfinguard demo|doctor ...
#
# `run` sets PFG_SYSROOT, the launcher's default --sysroot; the library is the cross build
# in build-arm64/. Checked: demo turns the crash into a clean exit on every interpreter of
# the sysroot (the static python3.X and the libpython3.X embedder, none skipped); doctor's
# coverage is complete and its live checks pass, for python3.X and for libpython3.X
# (the host linked to it and the host that dlopens it). Any other outcome fails.
#
#   tests/debian/arm64_launcher.sh ENV PYVERSION     e.g. bookworm-arm64 3.11
# Exit 77 (skip, reason printed by tools/debian-env) when the environment cannot be had.
set -u
env="$1" py="$2"
cd "$(dirname "$0")/../.." || exit 1
tools/debian-env "$env" build || exit $?
fail=0
out=$(tools/debian-env "$env" run tools/pyfinguard demo --jobs 2)
rc=$?
printf '%s\n' "$out"
if [ "$rc" -ne 0 ]; then
  echo "FAIL: pyfinguard demo exited with $rc"; fail=1
elif ! printf '%s\n' "$out" | grep -q '^2 interpreter(s) run, 2 clean with the guard, 0 skipped$'; then
  echo "FAIL: pyfinguard demo did not run both python$py and libpython$py cleanly"; fail=1
fi
for what in "python$py" "--libpython libpython$py.so.1.0"; do
  # shellcheck disable=SC2086  # $what is two words for --libpython
  tools/debian-env "$env" run tools/pyfinguard doctor $what
  rc=$?
  [ "$rc" -eq 0 ] || { echo "FAIL: pyfinguard doctor $what exited with $rc"; fail=1; }
done
[ "$fail" -eq 0 ] && echo "PASS: demo and doctor on $env (python$py, libpython$py)"
exit "$fail"
