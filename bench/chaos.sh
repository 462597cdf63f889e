#!/bin/bash
# Crash safety at scale: N lifecycles per engine (lxc on ZFS, pve-lxc against
# the emulator), each runtime command SIGKILLed at a random instant of
# create/start/delete, then gc and the caller's retry; prints the seed, the
# phase timings and the leftover counts (all must be zero).
#
#   bench/chaos.sh [-n N] [-s SEED]     (root; default N=100)
set -euo pipefail
n=100
seed=
while [ $# -gt 0 ]; do
    case $1 in
        -n) n=$2; shift 2 ;;
        -s) seed=$2; shift 2 ;;
        *) echo "usage: $0 [-n N] [-s SEED]" >&2; exit 2 ;;
    esac
done
cd "$(dirname "$0")/.."
export LXCRI_CHAOS_N=$n
[ -n "$seed" ] && export LXCRI_CHAOS_SEED=$seed
exec cargo test -q -p proxmox-lxcri --test chaos -- --nocapture --test-threads 1 sigkill_at_any_instant
