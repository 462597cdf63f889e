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
runc=${RUNC:-$(command -v runc || echo /usr/sbin/runc)}
lxcri=${PROXMOX_LXCRI:-target/x86_64-unknown-linux-gnu/release/proxmox-lxcri}
[ -x "$lxcri" ] || cargo build --release -q -p proxmox-lxcri
tmp=$(mktemp -d /tmp/lxcri-bench.XXXXXX)
roots=$(mktemp -d /run/lxcri-bench.XXXXXX)
cleanup() {
    "$runc" --root "$roots/runc" delete -f bench-r >/dev/null 2>&1 || true
    "$lxcri" --root "$roots/lxcri" delete -f bench-l >/dev/null 2>&1 || true
    rm -rf "$tmp" "$roots"
}
trap cleanup EXIT
b=$tmp/bundle
mkdir -p "$b"/rootfs/{bin,proc,sys,dev,tmp,etc}
cp /bin/busybox "$b/rootfs/bin/"
ln -s busybox "$b/rootfs/bin/sleep"; ln -s busybox "$b/rootfs/bin/true"
(cd "$b" && "$runc" spec)
jq '.process.terminal = false | .process.args = ["/bin/sleep", "100000"]' "$b/config.json" > "$b/c" && mv "$b/c" "$b/config.json"
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
stats() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {m=v[int((NR+1)/2)]; p=v[int(NR*0.9+0.5)]; printf "%.1f %.1f\n", m/1000, p/1000}'; }
read -r rm rp < <(stats "${tr[@]}")
read -r lm lp < <(stats "${tl[@]}")
printf '%-16s %6s %10s %10s\n' runtime runs median_ms p90_ms
printf '%-16s %6d %10s %10s\n' runc "$n" "$rm" "$rp"
printf '%-16s %6d %10s %10s\n' proxmox-lxcri "$n" "$lm" "$lp"
awk -v a="$lm" -v b="$rm" -v c="$lp" -v d="$rp" 'BEGIN {printf "ratio proxmox-lxcri/runc: median %.2fx, p90 %.2fx\n", a/b, c/d}'
