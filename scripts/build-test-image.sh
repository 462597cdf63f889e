#!/bin/bash
# Build the busybox OCI test image used by the containerd tests and benchmark.
#
#   scripts/build-test-image.sh [OUTPUT.tar]      (default: target/test-image/busybox.tar)
#
# The result is an OCI image-layout tarball holding one image, tagged `test`, whose index
# entry carries `io.containerd.image.name=localhost/busybox:test`, so a plain
#   ctr -n NS images import OUTPUT.tar
# registers it as `localhost/busybox:test` (also works with `--base-name localhost/busybox`).
#
# Content: static /bin/busybox with every applet symlinked into /bin, /etc/passwd and /etc/group
# (root and nobody/nogroup 65534), /tmp, /root. Config: Cmd ["sh"], Env PATH, linux/amd64.
#
# Idempotent: when OUTPUT is newer than this script and the busybox binary it does nothing.
# Needs: umoci, jq, tar, a static busybox (BUSYBOX=..., default /bin/busybox).
set -euo pipefail

out=${1:-target/test-image/busybox.tar}
busybox=${BUSYBOX:-/bin/busybox}
name=${TEST_IMAGE_NAME:-localhost/busybox:test}
tag=${name##*:}
self=$(readlink -f "${BASH_SOURCE[0]}")

die() { echo "build-test-image: $*" >&2; exit 1; }
for tool in umoci jq tar; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install $tool)"
done
[ -x "$busybox" ] || die "$busybox not found (apt-get install busybox-static)"
if command -v file >/dev/null && ! file -L "$busybox" | grep -q 'statically linked'; then
    die "$busybox is not statically linked (apt-get install busybox-static)"
fi

if [ -s "$out" ] && [ "$out" -nt "$self" ] && [ "$out" -nt "$(readlink -f "$busybox")" ]; then
    exit 0
fi

mkdir -p "$(dirname "$out")"
work=$(mktemp -d "$(dirname "$out")/.build-test-image.XXXXXX")
trap 'rm -rf "$work"' EXIT
layout=$work/layout

umoci init --layout "$layout"
umoci new --image "$layout:$tag"
umoci unpack --image "$layout:$tag" "$work/bundle" >/dev/null
rootfs=$work/bundle/rootfs

mkdir -p "$rootfs"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,root,proc,sys,dev,run,var/tmp}
chmod 1777 "$rootfs/tmp" "$rootfs/var/tmp"
chmod 0700 "$rootfs/root"
install -m 0755 "$busybox" "$rootfs/bin/busybox"
for applet in $("$busybox" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$rootfs/bin/$applet"
done
cat >"$rootfs/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat >"$rootfs/etc/group" <<'GROUP'
root:x:0:
nogroup:x:65534:
GROUP
echo "test" >"$rootfs/etc/hostname"
: >"$rootfs/etc/hosts"
: >"$rootfs/etc/resolv.conf"

umoci repack --image "$layout:$tag" "$work/bundle"
umoci config --image "$layout:$tag" \
    --os linux --architecture amd64 \
    --config.cmd sh \
    --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --config.workingdir / \
    --history.comment "proxmox-lxcri test image"
umoci gc --layout "$layout"

# Name the image for containerd's importer (ctr images import reads this annotation).
jq --arg name "$name" \
    '.manifests |= map(.annotations["io.containerd.image.name"] = $name)' \
    "$layout/index.json" >"$work/index.json"
mv "$work/index.json" "$layout/index.json"

tar -C "$layout" --owner=0 --group=0 --numeric-owner -cf "$work/image.tar" .
mv "$work/image.tar" "$out"
echo "build-test-image: wrote $out ($name)" >&2
