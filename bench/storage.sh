#!/bin/bash
# Storage benchmark: container volumes from rootfs of ~20 MB, 200 MB and
# 1 GB on a throw-away ZFS pool (zfs-fuse here): first create (copy into
# the image cache + clone) vs cached create (clone) vs the dir storage.
# Prints a markdown table. Run as root. Extra args go to storage-bench
# (--sizes 20,200,1024 --runs 10 --first-runs 3).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release -q -p proxmox-lxcri-storage --features testpool --bin storage-bench
exec target/x86_64-unknown-linux-gnu/release/storage-bench "$@"
