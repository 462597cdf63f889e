#!/bin/bash
# Benchmark: a pod through containerd's CRI (RunPodSandbox + CreateContainer +
# StartContainer, then StopPodSandbox + RemovePodSandbox), proxmox-lxcri (lxc engine)
# against runc, in one containerd, alternating; CNI by proxmox-lxcri-cni.
#
#   bench/cri.sh [-n N] [--pve]  (N pods per runtime, default 10; BENCH_N=N too)
#
# --pve: the same pods on three engines in one containerd, alternating: pve-lxc against a
# pve-emulator (a pod is one CT; its second container costs no API request), the lxc
# engine and runc; also times a second container added to the running pod
# (`bench_pods_on_each_engine` in tests/cri_pve.rs).
#
# Runs the ignored test `bench_pod_start_and_removal` of crates/proxmox-lxcri/tests/cri.rs
# (its harness: tests/common/cri.rs) with the release build of proxmox-lxcri as the runtime
# under test. Prints medians, p90s and the ratios. Needs what the CRI tests need (root,
# containerd 1.6, lxc, containernetworking-plugins, runc).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${BENCH_N:-10}
PVE=
while [ $# -gt 0 ]; do
    case $1 in
        -n) N=$2; shift 2 ;;
        -n*) N=${1#-n}; shift ;;
        --pve) PVE=1; shift ;;
        -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench/cri.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
cargo build --workspace --bins
cargo build --release -p proxmox-lxcri
rt=${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-gnu/release/proxmox-lxcri
if [ -n "$PVE" ]; then
    LXCRI_TEST_RUNTIME=$(readlink -f "$rt") LXCRI_BENCH_N=$N \
        cargo test -p proxmox-lxcri --test cri_pve -- --ignored --exact bench_pods_on_each_engine \
        --nocapture 2>&1 | grep -E '^(pod |2nd |pods |test result|thread|panicked)'
    exit "${PIPESTATUS[0]}"
fi
LXCRI_TEST_RUNTIME=$(readlink -f "$rt") LXCRI_BENCH_N=$N \
    cargo test -p proxmox-lxcri --test cri -- --ignored --exact bench_pod_start_and_removal \
    --nocapture 2>&1 | grep -E '^(pod |test result|thread|panicked)'
