# Shared by tools/debian-env (tools/sid-env) and tests/package/test_package.sh: Debian chroots made with
# debootstrap from the archive this machine's apt already uses. Sourced, not run:
#
#   pfg_apt_mirror                 print the archive URI of this machine's apt configuration
#   pfg_archive_reachable URI SUITE  can apt's own downloader fetch dists/SUITE/InRelease?
#   pfg_debootstrap SUITE DIR URI LOG  debootstrap --variant=minbase; status 0, 1 (failed),
#                                  2 (the archive could not be reached: a reason to skip)
#   pfg_chroot_apt_setup ROOT URI SUITE  apt inside: that archive and suite only, no
#                                  recommends, Valid-Until not checked
#   pfg_in_chroot ROOT BIND CMD... run CMD chrooted in ROOT (as root, a clean environment),
#                                  with /proc and /dev mounted and the directory BIND (if
#                                  not empty) bound at the same path, in a private mount
#                                  namespace whose mounts are undone on exit
#
# No host name is written anywhere: the archive always comes from /etc/apt (or from the
# caller's override).

# The first Debian archive URI in /etc/apt/sources.list or
# /etc/apt/sources.list.d/*.{list,sources}: a "deb" entry whose suite is a Debian release
# without a -security/-updates/-backports suffix. Status 1 when there is none.
pfg_apt_mirror() {
  local f
  local -a files=()
  [[ -f /etc/apt/sources.list ]] && files+=(/etc/apt/sources.list)
  for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [[ -f "$f" ]] && files+=("$f")
  done
  ((${#files[@]})) || return 1
  python3 - "${files[@]}" <<'PY'
import re, sys
RELEASES = {"buster", "bullseye", "bookworm", "trixie", "forky", "duke", "sid", "unstable",
            "testing", "stable", "oldstable", "experimental"}
def ok(uri, suites):
    return uri.startswith(("http://", "https://")) and \
        any(s.strip("/") in RELEASES for s in suites)
found = []
for path in sys.argv[1:]:
    text = open(path, errors="replace").read()
    if path.endswith(".sources"):
        for stanza in re.split(r"\n\s*\n", text):
            f = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line or line[:1].isspace():
                    continue
                k, v = line.split(":", 1)
                f[k.strip().lower()] = v.split()
            if "deb" not in f.get("types", []) or f.get("enabled", ["yes"])[0] == "no":
                continue
            for uri in f.get("uris", []):
                if ok(uri, f.get("suites", [])):
                    found.append(uri)
    else:
        for line in text.splitlines():
            line = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
            if len(line) >= 3 and line[0] == "deb" and ok(line[1], [line[2]]):
                found.append(line[1])
if not found:
    sys.exit(1)
print(found[0].rstrip("/"))
PY
}

# Reachable? apt's own downloader, so apt's proxy settings apply.
pfg_archive_reachable() {
  local m="$1" suite="$2" tmp
  tmp="$(mktemp -d)"
  if /usr/lib/apt/apt-helper download-file "$m/dists/$suite/InRelease" "$tmp/InRelease" \
       >/dev/null 2>&1; then
    rm -rf "$tmp"; return 0
  fi
  rm -rf "$tmp"; return 1
}

pfg_debootstrap() {
  local suite="$1" dir="$2" m="$3" log="$4"
  local keyring=()
  [[ -f /usr/share/keyrings/debian-archive-keyring.gpg ]] &&
    keyring=(--keyring=/usr/share/keyrings/debian-archive-keyring.gpg)
  if debootstrap --variant=minbase "${keyring[@]}" "$suite" "$dir" "$m" >"$log" 2>&1; then
    return 0
  fi
  tail -n 15 "$log" >&2
  if grep -qE 'Failed getting release file|Couldn.t download|Temporary failure|unable to resolve' \
       "$log"; then
    return 2
  fi
  return 1
}

pfg_chroot_apt_setup() {
  local root="$1" m="$2" suite="$3"
  printf 'Acquire::Check-Valid-Until "false";\nAcquire::Check-Date "false";\n' \
    >"$root/etc/apt/apt.conf.d/99pyfinguard"
  printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' \
    >>"$root/etc/apt/apt.conf.d/99pyfinguard"
  # Same archive as this machine's apt.
  printf 'deb %s %s main\n' "$m" "$suite" >"$root/etc/apt/sources.list"
  cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
}

# The mounts live in a private mount namespace (unshare -m) of the command and are
# unmounted on exit (trap), so nothing stays mounted even if the command is killed.
pfg_in_chroot() {
  local root="$1" bind="$2"; shift 2
  unshare --mount --propagation private -- /bin/bash -c '
    set -eu
    root="$1" repo="$2"; shift 2
    undo() {
      for m in "$root$repo" "$root/dev/shm" "$root/dev/pts" "$root/dev" "$root/proc"; do
        mountpoint -q "$m" 2>/dev/null && umount -l "$m" 2>/dev/null || true
      done
    }
    trap undo EXIT
    mount -t proc proc "$root/proc"
    mount --rbind /dev "$root/dev"
    mount --make-rslave "$root/dev"
    if [ -n "$repo" ]; then
      mkdir -p "$root$repo"
      mount --bind "$repo" "$root$repo"
    fi
    # No exec: the trap must run after the command.
    rc=0
    env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
        LANG=C.UTF-8 TERM="${TERM:-dumb}" ${CI:+CI=$CI} DEBIAN_FRONTEND=noninteractive \
        chroot "$root" "$@" || rc=$?
    exit $rc
  ' pfg-chroot-ns "$root" "$bind" "$@"
}
