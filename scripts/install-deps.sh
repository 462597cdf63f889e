#!/bin/bash
# Install what proxmox-lxcri and its tests need on Debian 12 (run as root).
# Idempotent; quick when everything is already there.
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "install-deps: run as root" >&2; exit 1; }

# containernetworking-plugins: the CNI `loopback` plugin containerd's CRI runs beside ours;
# protobuf-compiler: protoc, which the k8s-cri crate (CRI test client) needs to build.
pkgs=(lxc containerd runc busybox-static umoci skopeo jq iproute2 nftables file util-linux procps zfs-fuse curl zstd xz-utils
    containernetworking-plugins protobuf-compiler)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "install-deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The Debian containerd package starts a system service; the tests run their
# own instances and never touch it.
command -v cargo >/dev/null || {
    echo "install-deps: cargo not found; install Rust (https://rustup.rs) first" >&2
    exit 1
}
# Unprivileged containers (user namespaces, Proxmox's unprivileged CTs) map
# root to 100000..165535; LXC maps through newuidmap, which checks these.
for f in /etc/subuid /etc/subgid; do
    grep -qs '^root:100000:65536$' "$f" || echo 'root:100000:65536' >>"$f"
done
# proxmoxer, a widely used Python client of the Proxmox API, drives the
# emulator in crates/pve-emulator/tests/python_client.rs.
if ! python3 -c 'import proxmoxer' 2>/dev/null; then
    echo "install-deps: installing proxmoxer (PyPI)"
    python3 -m pip --version >/dev/null 2>&1 || {
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends python3-pip >/dev/null
    }
    python3 -m pip install -q proxmoxer==2.3.0 2>/dev/null ||
        python3 -m pip install -q --break-system-packages proxmoxer==2.3.0
fi
