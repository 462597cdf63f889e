#!/bin/bash
# Install what proxmox-lxcri and its tests need on Debian 12 (run as root).
# Idempotent; quick when everything is already there.
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "install-deps: run as root" >&2; exit 1; }

pkgs=(lxc containerd runc busybox-static umoci skopeo jq iproute2 nftables apparmor file util-linux procps zfs-fuse curl zstd xz-utils
      docker.io podman conmon)
# The metrics tests scrape with a real Prometheus and lint with promtool;
# the package test makes a Debian root with debootstrap.
pkgs+=(prometheus debootstrap)
# The CRI tests: the CNI `loopback` and `portmap` plugins run beside ours
# (containernetworking-plugins); the k8s-cri crate (their gRPC client) needs protoc.
pkgs+=(containernetworking-plugins protobuf-compiler)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "install-deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # No package may start its service while we install (docker.io would
    # start a system dockerd that sets up iptables and a docker0 bridge):
    # the tests run private dockerd/containerd instances of their own.
    added_policy=
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        added_policy=1
    fi
    rc=0
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; } || rc=$?
    [ -n "$added_policy" ] && rm -f /usr/sbin/policy-rc.d
    [ $rc = 0 ] || exit $rc
fi
# pve-emulator runs VMs with real QEMU. Debian 12's qemu-system-x86 needs
# qemu-utils/qemu-block-extra of its own release (a newer qemu-utils from
# backports conflicts), hence the pinned downgrade.
if ! command -v qemu-system-x86_64 >/dev/null; then
    echo "install-deps: installing qemu-system-x86"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends --allow-downgrades \
        qemu-system-x86 qemu-utils/bookworm qemu-block-extra/bookworm >/dev/null
fi
# The pve-vm engine boots its guests with a distribution kernel on the node
# (Debian's cloud flavour: virtio drivers, small, no initramfs needed from
# Debian; the runtime builds its own). Installing it changes no boot entry
# of this machine that matters to the tests (containers do not boot it).
if ! ls /boot/vmlinuz-*cloud-amd64 >/dev/null 2>&1; then
    echo "install-deps: installing linux-image-cloud-amd64 (pve-vm guest kernel)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends linux-image-cloud-amd64 >/dev/null
fi
# Services of packages installed here are not started (see policy-rc.d
# above); the tests run their own containerd and dockerd instances.
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
