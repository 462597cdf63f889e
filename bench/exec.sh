#!/bin/bash
# Benchmark: `exec` of a short process (`true`) into a running container,
# runc vs proxmox-lxcri (lxc engine), one running container each from the
# same `runc spec` bundle (busybox `sleep`), alternating, in one run. Prints
# median / p90 in ms and the proxmox-lxcri/runc ratio. Stops on the first
# exec that fails or prints anything.
#
#   bench/exec.sh [-n N]        (root; default N=30)
set -euo pipefail
n=30
[ "${1:-}" = "-n" ] && n=$2
cd "$(dirname "$0")/.."
. bench/lib.sh
tmp=$(mktemp -d /tmp/lxcri-bench.XXXXXX)
roots=$(mktemp -d /run/lxcri-bench.XXXXXX)
cleanup() {
    "$runc" --root "$roots/runc" delete -f bench-r >/dev/null 2>&1 || true
    "$lxcri" --root "$roots/lxcri" delete -f bench-l >/dev/null 2>&1 || true
    rm -rf "$tmp" "$roots"
}
trap cleanup EXIT
b=$tmp/bundle
busybox_bundle "$b" '["/bin/sleep", "100000"]' sleep true
"$runc" --root "$roots/runc" run -d --bundle "$b" bench-r </dev/null >/dev/null
"$lxcri" --root "$roots/lxcri" run -d --bundle "$b" bench-l </dev/null >/dev/null

# Microseconds of one exec; it must succeed and print nothing.
time_us() {
    local s e out
    s=$(date +%s%N)
    out=$("$@" 2>&1 </dev/null) || { echo "bench/exec.sh: failed ($?): $* : $out" >&2; return 1; }
    e=$(date +%s%N)
    [ -z "$out" ] || { echo "bench/exec.sh: $* printed '$out'" >&2; return 1; }
    echo $(( (e - s) / 1000 ))
}
declare -a tr tl
for i in $(seq 1 $((n + 2))); do
    a=$(time_us "$runc" --root "$roots/runc" exec bench-r /bin/true)
    c=$(time_us "$lxcri" --root "$roots/lxcri" exec bench-l /bin/true)
    if [ "$i" -gt 2 ]; then tr+=("$a"); tl+=("$c"); fi
done
report "$n" "${tr[*]}" "${tl[*]}"
