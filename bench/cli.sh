#!/bin/bash
# Benchmark: a full `run` lifecycle (create, start, wait, delete) of a busybox
# `echo ok` bundle (the `runc spec` default, terminal off), runc vs
# proxmox-lxcri (lxc engine), same bundle, alternating, in one run. Prints
# median / p90 in ms and the proxmox-lxcri/runc ratio. Stops on the first
# run that fails or prints anything but `ok`.
#
#   bench/cli.sh [-n N]        (root; default N=30)
set -euo pipefail
n=30
[ "${1:-}" = "-n" ] && n=$2
cd "$(dirname "$0")/.."
. bench/lib.sh
# Roots on tmpfs under /run, where both runtimes keep them by default
# (/run/runc, /run/proxmox-lxcri): the bundle stays in /tmp.
tmp=$(mktemp -d /tmp/lxcri-bench.XXXXXX)
roots=$(mktemp -d /run/lxcri-bench.XXXXXX)
trap 'rm -rf "$tmp" "$roots"' EXIT
b=$tmp/bundle
busybox_bundle "$b" '["/bin/echo", "ok"]' echo sh

# Microseconds of one run; the run must succeed and print exactly `ok`.
time_ms() {
    local s e out
    s=$(date +%s%N)
    out=$("$@" 2>&1 </dev/null) || { echo "bench/cli.sh: failed ($?): $* : $out" >&2; return 1; }
    e=$(date +%s%N)
    [ "$out" = ok ] || { echo "bench/cli.sh: $* printed '$out', not ok" >&2; return 1; }
    echo $(( (e - s) / 1000 ))
}
declare -a tr tl
for i in $(seq 1 $((n + 2))); do
    a=$(time_ms "$runc" --root "$roots/runc" run --bundle "$b" "r$i")
    c=$(time_ms "$lxcri" --root "$roots/lxcri" run --bundle "$b" "l$i")
    if [ "$i" -gt 2 ]; then tr+=("$a"); tl+=("$c"); fi
done
report "$n" "${tr[*]}" "${tl[*]}"
