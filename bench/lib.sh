# Shared by bench/cli.sh and bench/exec.sh (sourced, from the repo root).

runc=${RUNC:-$(command -v runc || echo /usr/sbin/runc)}
lxcri=${PROXMOX_LXCRI:-target/x86_64-unknown-linux-gnu/release/proxmox-lxcri}
[ -x "$lxcri" ] || cargo build --release -q -p proxmox-lxcri

# A `runc spec` bundle in $1 of busybox with the applets $3..., running the
# process $2 (a JSON array), terminal off.
busybox_bundle() {
    local b=$1 args=$2 a
    shift 2
    mkdir -p "$b"/rootfs/{bin,proc,sys,dev,tmp,etc}
    cp /bin/busybox "$b/rootfs/bin/"
    for a in "$@"; do ln -s busybox "$b/rootfs/bin/$a"; done
    (cd "$b" && "$runc" spec)
    jq --argjson a "$args" '.process.terminal = false | .process.args = $a' "$b/config.json" > "$b/c"
    mv "$b/c" "$b/config.json"
}

# "median p90" in ms of microsecond samples.
stats() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {m=v[int((NR+1)/2)]; p=v[int(NR*0.9+0.5)]; printf "%.1f %.1f\n", m/1000, p/1000}'; }

# The table and the ratio: report N "runc samples..." -- "lxcri samples...".
report() {
    local n=$1 rm rp lm lp
    read -r rm rp < <(stats $2)
    read -r lm lp < <(stats $3)
    printf '%-16s %6s %10s %10s\n' runtime runs median_ms p90_ms
    printf '%-16s %6d %10s %10s\n' runc "$n" "$rm" "$rp"
    printf '%-16s %6d %10s %10s\n' proxmox-lxcri "$n" "$lm" "$lp"
    awk -v a="$lm" -v b="$rm" -v c="$lp" -v d="$rp" 'BEGIN {printf "ratio proxmox-lxcri/runc: median %.2fx, p90 %.2fx\n", a/b, c/d}'
}
