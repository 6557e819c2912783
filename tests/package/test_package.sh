#!/usr/bin/env bash
# Suite `package` (docs/deployment.md, "The Debian package"): the Debian packages, built from a copy of this tree, checked
# by lintian, and installed into a clean Debian 12 (bookworm) chroot where the launcher,
# the library, doctor and pyfinguard-dev's pkg-config file are used from the installed
# files only (in_chroot.sh).
#
#   1. copy the tree (git ls-files: tracked and untracked, not ignored) to a temporary
#      directory and run `dpkg-buildpackage -b -us -uc` there (the .debs land beside the
#      copy, never in the source tree);
#   2. the Debian version is meson.build's project version; the packages hold what
#      debian/README.source says (the library under /usr/lib/<triplet>, nothing from
#      tests/ but the four sources doctor compiles);
#   3. lintian on the .changes: any error fails (warnings and overrides are printed);
#   4. a bookworm chroot made with debootstrap from this machine's apt archive
#      (tools/debian-chroot.sh, as tools/debian-env does), cached in
#      ${PFG_PACKAGE_CACHE:-/var/cache/pyfinguard}/bookworm-<hash> with python3,
#      python3-dev, gcc and pkgconf (doctor's live check compiles an extension); rebuilt
#      when missing or broken, created under an exclusive lock, used under a shared one;
#   5. each run works on an overlay of that chroot (the cached one stays clean), installs
#      the .debs with apt and runs in_chroot.sh.
#
# Exit status: 0 passed; 1 failed; 77 (skip, reason printed) when the packaging tools are
# missing, or, after steps 1-3 passed, when not root or the archive cannot be reached or
# debootstrap fails to make the chroot. PFG_PACKAGE_MIRROR=<uri> overrides the archive;
# PFG_PACKAGE_KEEP=1 keeps the temporary directory.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="${PYFINGUARD_SOURCE_ROOT:-$(cd "$here/../.." && pwd)}"
cache="${PFG_PACKAGE_CACHE:-/var/cache/pyfinguard}"
SKIP=77
# shellcheck source=tools/debian-chroot.sh
. "$repo/tools/debian-chroot.sh"

say() { echo "package: $*" >&2; }
skip() { say "SKIP: $*"; exit "$SKIP"; }
die() { say "FAIL: $*"; exit 1; }
T0=$SECONDS

for t in dpkg-buildpackage dh lintian dpkg-architecture; do
  command -v "$t" >/dev/null ||
    skip "$t not found: run tools/setup as root (it installs dpkg-dev, debhelper, lintian)"
done

work="$(mktemp -d "${TMPDIR:-/tmp}/pfg-package.XXXXXX")"
cleanup() {
  if [[ "${PFG_PACKAGE_KEEP:-0}" == 1 ]]; then say "kept $work"; return; fi
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT

version="$(sed -n "s/^ *version *: *'\([^']*\)'.*/\1/p" "$repo/meson.build" | head -n1)"
[[ -n "$version" ]] || die "no project version in $repo/meson.build"
triplet="$(dpkg-architecture -qDEB_HOST_MULTIARCH)"

# --- 1. build from a copy ------------------------------------------------------------
src="$work/pyfinguard-$version"
mkdir -p "$src"
if git -C "$repo" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  (cd "$repo" && git ls-files -co --exclude-standard -z | tar --null -T - -cf -) |
    tar -xf - -C "$src" || die "copying the tree failed"
else
  tar -C "$repo" --exclude='./build' --exclude='./build-*' --exclude='./.git' -cf - . |
    tar -xf - -C "$src" || die "copying the tree failed"
fi
# Where a build in the tree would write (debian/, obj-<triplet>/, the .debs beside the
# tree), before and after: the build must not touch them. (Not all of the tree: it may be
# edited meanwhile.)
tree_state() {
  ls -a "$repo/debian" 2>/dev/null
  ls -d "$repo"/obj-* "$repo"/../pyfinguard*_* 2>/dev/null
}
tree_state_before="$(tree_state)"
t=$SECONDS
if ! (cd "$src" && dpkg-buildpackage -b -us -uc) >"$work/build.log" 2>&1; then
  tail -n 40 "$work/build.log" >&2
  die "dpkg-buildpackage -b -us -uc failed (log above)"
fi
say "dpkg-buildpackage -b -us -uc: $((SECONDS - t)) s"
changes=("$work"/pyfinguard_*.changes)
debs=("$work/pyfinguard_${version}_"*.deb "$work/pyfinguard-dev_${version}_"*.deb)
for f in "${changes[0]}" "${debs[@]}"; do
  [[ -f "$f" ]] || die "not built: $f"
done
tree_state_after="$(tree_state)"
[[ "$tree_state_after" == "$tree_state_before" ]] ||
  die "the source tree changed during the build: $(diff <(echo "$tree_state_before") <(echo "$tree_state_after"))"

# --- 2. version and contents ---------------------------------------------------------
dversion="$(cd "$src" && dpkg-parsechangelog -S Version)"
[[ "$dversion" == "$version" || "$dversion" == "$version"-* ]] ||
  die "debian/changelog's version $dversion is not meson.build's $version"
ls_deb() { dpkg-deb -c "$1" | awk '{ print $6 }' | sed 's|^\./|/|'; }
ls_deb "${debs[0]}" >"$work/pyfinguard.files"
ls_deb "${debs[1]}" >"$work/pyfinguard-dev.files"
bad=0
want() {
  grep -qxF "$2" "$work/$1.files" || { say "FAIL: $1 lacks $2"; bad=1; }
}
want pyfinguard /usr/bin/pyfinguard
want pyfinguard "/usr/lib/$triplet/libpyfinguard.so.$version"
want pyfinguard "/usr/lib/$triplet/libpyfinguard.so.${version%%.*}"
want pyfinguard /usr/share/man/man1/pyfinguard.1.gz
want pyfinguard /usr/share/man/man7/pyfinguard-env.7.gz
want pyfinguard-dev /usr/include/pyfinguard.h
want pyfinguard-dev /usr/include/pyfinguard/pep788.h
want pyfinguard-dev "/usr/lib/$triplet/libpyfinguard.so"
want pyfinguard-dev "/usr/lib/$triplet/pkgconfig/pyfinguard.pc"
want pyfinguard /usr/share/pyfinguard/tools/pfgpy/c/pfgtest.c
# Nothing from tests/.
if grep -hE '(^|/)tests?(/|$)|test_' "$work"/*.files; then
  say "FAIL: test files in the packages (above)"; bad=1
fi
((bad == 0)) || die "package contents"
say "contents: $(wc -l <"$work/pyfinguard.files") + $(wc -l <"$work/pyfinguard-dev.files") entries, as expected"

# --- 3. lintian -----------------------------------------------------------------------
t=$SECONDS
lintian --fail-on error --display-info "${changes[0]}" >"$work/lintian.out" 2>&1
lrc=$?
grep -v 'running with root privileges' "$work/lintian.out" | sed 's/^/  lintian: /' >&2
((lrc == 0)) || die "lintian reported errors (or failed: exit $lrc)"
say "lintian: no error ($((SECONDS - t)) s; $(grep -c '^W: ' "$work/lintian.out") warning(s), $(grep -c '^I: ' "$work/lintian.out") info tag(s))"

# --- 4. the bookworm chroot -------------------------------------------------------------
[[ $EUID -eq 0 ]] ||
  skip "built and lintian-clean; installing into a chroot needs root (debootstrap, chroot, mounts)"
command -v unshare >/dev/null || skip "unshare (util-linux) not found"
command -v debootstrap >/dev/null || skip "debootstrap not found: run tools/setup as root"

suite=bookworm
base_packages=(python3 python3-dev gcc libc6-dev pkgconf)
# Bump when the steps below change in a way that needs a new chroot.
recipe=1
key="$(printf '%s\n' "$recipe" "$suite" "${base_packages[@]}" | sha256sum | cut -c1-12)"
dir="$cache/$suite-$key"
lock="$cache/$suite.lock"
mkdir -p "$cache"

healthy() {
  [[ -f "$1/.pyfinguard-ready" && -x "$1/usr/bin/python3" ]] || return 1
  pfg_in_chroot "$1" "" /usr/bin/python3 -c 'import sysconfig' >/dev/null 2>&1
}

create() {
  local m from="this machine's apt configuration" ds=0 t1
  if [[ -n "${PFG_PACKAGE_MIRROR:-}" ]]; then
    m="$PFG_PACKAGE_MIRROR" from=PFG_PACKAGE_MIRROR
  else
    m="$(pfg_apt_mirror)" ||
      skip "built and lintian-clean; no Debian archive in /etc/apt/sources.list{,.d} (set PFG_PACKAGE_MIRROR)"
  fi
  pfg_archive_reachable "$m" "$suite" ||
    skip "built and lintian-clean; the archive $m (from $from) cannot be reached (no dists/$suite/InRelease)"
  [[ -e "$dir" ]] && say "$dir is incomplete or broken: rebuilding"
  rm -rf --one-file-system "$dir" "$dir.tmp"
  say "creating $dir from $m (debootstrap --variant=minbase $suite)"
  t=$SECONDS
  pfg_debootstrap "$suite" "$dir.tmp" "$m" "$cache/$suite-debootstrap.log" || ds=$?
  ((ds == 2)) && skip "built and lintian-clean; debootstrap could not reach $m (log: $cache/$suite-debootstrap.log)"
  ((ds == 0)) || skip "built and lintian-clean; debootstrap could not make the chroot (log: $cache/$suite-debootstrap.log)"
  t1=$SECONDS
  pfg_chroot_apt_setup "$dir.tmp" "$m" "$suite"
  if ! { pfg_in_chroot "$dir.tmp" "" apt-get update -qq &&
         pfg_in_chroot "$dir.tmp" "" apt-get install -y -qq "${base_packages[@]}" &&
         pfg_in_chroot "$dir.tmp" "" apt-get clean; } >"$cache/$suite-apt.log" 2>&1; then
    tail -n 20 "$cache/$suite-apt.log" >&2
    die "installing ${base_packages[*]} in the new chroot failed"
  fi
  printf 'created %s from %s; debootstrap %d s, packages %d s\n' "$(date -u +%FT%TZ)" "$m" \
    $((t1 - t)) $((SECONDS - t1)) >"$dir.tmp/.pyfinguard-ready"
  mv "$dir.tmp" "$dir"
  healthy "$dir" || die "the new chroot $dir does not work"
  local old
  for old in "$cache/$suite"-*; do
    [[ "$old" == "$dir" || ! -d "$old" || "$old" == *.log || "$old" == *.lock ]] && continue
    say "removing old chroot $old"
    rm -rf --one-file-system "$old"
  done
  say "created $dir in $((SECONDS - t)) s (debootstrap $((t1 - t)) s, packages $((SECONDS - t1)) s)"
}

t=$SECONDS
exec 9>"$lock"
flock -x 9
healthy "$dir" || create
flock -s 9       # others may use it too; nobody rebuilds it meanwhile
say "chroot $dir ready in $((SECONDS - t)) s ($(cat "$dir/.pyfinguard-ready"))"

# --- 5. install and run, on an overlay of the cached chroot ---------------------------
mkdir -p "$work/upper" "$work/ovl" "$work/root"
cp "${debs[@]}" "$here/late_reader.py" "$here/in_chroot.sh" "$work/"
t=$SECONDS
# The overlay lives in a mount namespace of its own: gone when the command ends.
unshare --mount --propagation private -- /bin/bash -c '
  set -eu
  dir="$1" work="$2" repo="$3" triplet="$4" version="$5"
  mount -t overlay overlay -o "lowerdir=$dir,upperdir=$work/upper,workdir=$work/ovl" "$work/root"
  mkdir -p "$work/root/tmp/pfg-package"
  cp "$work"/*.deb "$work/late_reader.py" "$work/in_chroot.sh" "$work/root/tmp/pfg-package/"
  . "$repo/tools/debian-chroot.sh"
  pfg_in_chroot "$work/root" "" /bin/sh /tmp/pfg-package/in_chroot.sh "$triplet" "$version" "$repo"
' pfg-package-ns "$dir" "$work" "$repo" "$triplet" "$version"
rc=$?
say "install and checks in the chroot: $((SECONDS - t)) s; total $((SECONDS - T0)) s"
((rc == 0)) || die "checks in the chroot failed (exit $rc)"
say "PASS"
