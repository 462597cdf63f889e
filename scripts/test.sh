#!/bin/bash
# Run every test (as root: the tests run real LXC containers, containerd,
# zfs-fuse and pve-emulator).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
# The runtime tests start pve-emulator from the target dir.
cargo build --workspace --bins
status=0
cargo test --workspace --no-fail-fast "$@" || status=1
# The lifecycle and containerd suites once more, on the pve-lxc engine: each
# test gets its own pve-emulator (real HTTPS, a token, a pinned fingerprint).
LXCRI_TEST_ENGINE=pve-lxc cargo test -p proxmox-lxcri --no-fail-fast \
    --test lifecycle --test containerd --test observability "$@" || status=1
# The Docker and Podman suites once more against runc: the same checks pass
# there, so a failure on proxmox-lxcri is a difference, not a test bug.
LXCRI_TEST_RUNTIME=$(command -v runc) cargo test -p proxmox-lxcri --no-fail-fast \
    --test docker --test podman "$@" || status=1
# The Debian package (debug build, so no second build): installed, run and
# purged in a fresh Debian 12 root (debootstrap, cached between runs).
scripts/test-package.sh --debug || status=1
exit $status
