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
runc=${RUNC:-$(command -v runc || echo /usr/sbin/runc)}
lxcri=${PROXMOX_LXCRI:-target/x86_64-unknown-linux-gnu/release/proxmox-lxcri}
[ -x "$lxcri" ] || cargo build --release -q -p proxmox-lxcri
# Roots on tmpfs under /run, where both runtimes keep them by default
# (/run/runc, /run/proxmox-lxcri): the bundle stays in /tmp.
tmp=$(mktemp -d /tmp/lxcri-bench.XXXXXX)
roots=$(mktemp -d /run/lxcri-bench.XXXXXX)
trap 'rm -rf "$tmp" "$roots"' EXIT
b=$tmp/bundle
mkdir -p "$b"/rootfs/{bin,proc,sys,dev,tmp,etc}
cp /bin/busybox "$b/rootfs/bin/"
ln -s busybox "$b/rootfs/bin/echo"; ln -s busybox "$b/rootfs/bin/sh"
(cd "$b" && "$runc" spec)
jq '.process.terminal = false | .process.args = ["/bin/echo", "ok"]' "$b/config.json" > "$b/c" && mv "$b/c" "$b/config.json"

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
stats() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {m=v[int((NR+1)/2)]; p=v[int(NR*0.9+0.5)]; printf "%.1f %.1f\n", m/1000, p/1000}'; }
read -r rm rp < <(stats "${tr[@]}")
read -r lm lp < <(stats "${tl[@]}")
printf '%-16s %6s %10s %10s\n' runtime runs median_ms p90_ms
printf '%-16s %6d %10s %10s\n' runc "$n" "$rm" "$rp"
printf '%-16s %6d %10s %10s\n' proxmox-lxcri "$n" "$lm" "$lp"
awk -v a="$lm" -v b="$rm" -v c="$lp" -v d="$rp" 'BEGIN {printf "ratio proxmox-lxcri/runc: median %.2fx, p90 %.2fx\n", a/b, c/d}'
