#!/bin/bash
# A Debian 12 root for the package test, made once with debootstrap
# (--variant=minbase, plus lxc: the package depends on it) and reused:
#   scripts/debian-root.sh [CACHE_DIR]   prints the root's path
# CACHE_DIR defaults to $LXCRI_DEBIAN_ROOT_CACHE or /var/cache/proxmox-lxcri-test.
# The cached root is never modified by the test (it runs in an overlay or copy).
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "debian-root: run as root" >&2; exit 1; }
cache=${1:-${LXCRI_DEBIAN_ROOT_CACHE:-/var/cache/proxmox-lxcri-test}}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
root="$cache/bookworm-minbase-lxc"
if [ -f "$root/.complete" ]; then
    echo "$root"
    exit 0
fi
command -v debootstrap >/dev/null || {
    echo "debian-root: debootstrap missing (apt-get install debootstrap)" >&2
    exit 1
}
mkdir -p "$cache"
rm -rf "$root.partial"
# lxc and what it needs to start a container from a chroot; nothing else.
debootstrap --variant=minbase --include=lxc,libcap2-bin bookworm "$root.partial" "$mirror" \
    >"$cache/debootstrap.log" 2>&1 || {
    echo "debian-root: debootstrap failed; see $cache/debootstrap.log" >&2
    tail -5 "$cache/debootstrap.log" >&2
    exit 1
}
# The root is reused for many runs: drop the package cache to keep it small.
rm -f "$root.partial"/var/cache/apt/archives/*.deb
touch "$root.partial/.complete"
rm -rf "$root"
mv "$root.partial" "$root"
echo "$root"
