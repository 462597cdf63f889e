#!/bin/bash
# Benchmark: `ctr run --rm IMAGE ID true` through containerd's io.containerd.runc.v2 shim,
# runc vs proxmox-lxcri, in the same run, alternating, on the same image.
#
#   bench/containerd.sh [-n N] [--runtime-only runc|proxmox-lxcri] [--warmup W] [--keep] [--pve]
#
#   --pve                  also measure proxmox-lxcri on the pve-lxc engine against a
#                          pve-emulator (target/.../release/pve-emulator; PVE_EMULATOR=...),
#                          and print the API requests per operation from the events log
#
#   -n N / BENCH_N=N       timed runs per runtime (default 20)
#   --warmup W             untimed runs per runtime first (default 2)
#   --runtime-only R       measure only R (runc or proxmox-lxcri), no ratio
#   RUNC=...               runc binary (default: runc in PATH, /usr/sbin/runc)
#   PROXMOX_LXCRI=...      default target/x86_64-unknown-linux-gnu/release/proxmox-lxcri
#                          (cargo build --release -p proxmox-lxcri)
#
# Starts its own containerd (root, state, sockets in a temp dir under /tmp; the system
# containerd is not used), imports the busybox test image (scripts/build-test-image.sh), and
# prints per-runtime median / p90 / min / mean in ms and the proxmox-lxcri/runc ratios.
# Needs root, containerd 1.6+, ctr, umoci, jq.
set -euo pipefail

cd "$(dirname "$0")/.."
N=${BENCH_N:-20}
WARMUP=2
ONLY=
KEEP=
PVE=
while [ $# -gt 0 ]; do
    case $1 in
        -n) N=$2; shift 2 ;;
        -n*) N=${1#-n}; shift ;;
        --warmup) WARMUP=$2; shift 2 ;;
        --runtime-only) ONLY=$2; shift 2 ;;
        --runtime-only=*) ONLY=${1#*=}; shift ;;
        --keep) KEEP=1; shift ;;
        --pve) PVE=1; shift ;;
        -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        [0-9]*) N=$1; shift ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
[[ $N =~ ^[0-9]+$ ]] && [ "$N" -ge 1 ] || { echo "-n wants a positive number" >&2; exit 2; }

die() { echo "bench/containerd.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (containerd)"
for t in containerd ctr containerd-shim-runc-v2; do
    command -v $t >/dev/null || die "$t not found (apt-get install containerd)"
done

RUNC=${RUNC:-$(command -v runc || echo /usr/sbin/runc)}
LXCRI=${PROXMOX_LXCRI:-target/x86_64-unknown-linux-gnu/release/proxmox-lxcri}
declare -A BIN=([runc]=$RUNC [proxmox-lxcri]=$LXCRI)
BIN[pve-lxc]=$LXCRI
case $ONLY in
    '') RUNTIMES=(runc proxmox-lxcri) ;;
    runc|proxmox-lxcri) RUNTIMES=("$ONLY") ;;
    *) die "--runtime-only wants runc or proxmox-lxcri, not '$ONLY'" ;;
esac
for r in "${RUNTIMES[@]}"; do
    [ -x "${BIN[$r]}" ] || die "$r binary ${BIN[$r]} not found or not executable" \
        "(build: cargo build --release -p proxmox-lxcri; or set PROXMOX_LXCRI / RUNC;" \
        "or --runtime-only runc)"
    BIN[$r]=$(readlink -f "${BIN[$r]}")
done
[ -n "$PVE" ] && RUNTIMES+=(pve-lxc) && BIN[pve-lxc]=${BIN[proxmox-lxcri]:-$(readlink -f "$LXCRI")}

IMAGE=localhost/busybox:test
TARGET=${CARGO_TARGET_DIR:-target}
TAR=$TARGET/test-image/busybox.tar
scripts/build-test-image.sh "$TAR"

# --- a private containerd -------------------------------------------------------------
D=$(mktemp -d /tmp/lxcri-bench.XXXXXX)
NS=bench$$
CTD_PID=
ctr_() { ctr --address "$D/c.sock" --namespace "$NS" "$@"; }
cleanup() {
    set +e
    if [ -n "$CTD_PID" ]; then
        for t in $(ctr_ task ls -q 2>/dev/null); do
            ctr_ task kill -a -s SIGKILL "$t" >/dev/null 2>&1
            ctr_ task rm -f "$t" >/dev/null 2>&1
        done
        for c in $(ctr_ c ls -q 2>/dev/null); do ctr_ c rm "$c" >/dev/null 2>&1; done
        kill "$CTD_PID" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$CTD_PID" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$CTD_PID" 2>/dev/null
        wait "$CTD_PID" 2>/dev/null
    fi
    [ -n "${EMU_PID:-}" ] && kill "$EMU_PID" 2>/dev/null
    [ -n "${BRIDGE:-}" ] && ip link del "$BRIDGE" 2>/dev/null
    # shims this containerd started
    for p in /proc/[0-9]*; do
        if { tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null | grep -q "containerd-shim.*$D/c.sock"; then
            kill -9 "${p#/proc/}" 2>/dev/null
        fi
    done
    awk -v d="$D" '$5 ~ "^"d {print $5}' /proc/self/mountinfo | sort -r |
        while read -r m; do umount -l "$m"; done
    rm -rf "/run/containerd/runc/$NS"
    if [ -n "$KEEP" ]; then echo "kept $D" >&2; else rm -rf "$D"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cat >"$D/config.toml" <<TOML
version = 2
root = "$D/root"
state = "$D/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing"]
[grpc]
  address = "$D/c.sock"
[ttrpc]
  address = "$D/c.sock.ttrpc"
[debug]
  address = "$D/d.sock"
  level = "warn"
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$D/opt"
TOML
EMU_PID=
if [ -n "$PVE" ]; then
    # A Proxmox node in a box; ids of the pve-lxc runs are routed to it.
    EMU=${PVE_EMULATOR:-target/x86_64-unknown-linux-gnu/release/pve-emulator}
    [ -x "$EMU" ] || die "$EMU not found (cargo build --release -p pve-emulator)"
    chmod 711 "$D"
    BRIDGE=lxbench$$
    mkdir -p "$D/pve/storage"
    "$EMU" --listen 127.0.0.1:0 --data-dir "$D/pve" --token 'root@pam!bench=bench-secret' \
        --storage "local=dir:$D/pve/storage" --bridge "$BRIDGE" >"$D/emu.out" 2>"$D/emu.log" &
    EMU_PID=$!
    for _ in $(seq 100); do grep -q '^listening' "$D/emu.out" 2>/dev/null && break; sleep 0.1; done
    ADDR=$(sed -n 's/^listening //p' "$D/emu.out")
    [ -n "$ADDR" ] || die "pve-emulator did not start: $(cat "$D/emu.log")"
    printf 'bench-secret' >"$D/token"; chmod 600 "$D/token"
    cat >"$D/lxcri.toml" <<TOML
default_backend = "lxc"
[[routing]]
pattern = "-pve-lxc-"
backend = "pve-lxc"
[pve]
url = "https://$ADDR"
node = "pve"
token_id = "root@pam!bench"
token_secret_file = "$D/token"
fingerprint = "$(cat "$D/pve/fingerprint")"
bridge = "$BRIDGE"
config_dir = "$D/pve/nodes/pve/lxc"
TOML
    export PROXMOX_LXCRI_CONFIG=$D/lxcri.toml
fi
containerd --config "$D/config.toml" >"$D/containerd.log" 2>&1 &
CTD_PID=$!
for _ in $(seq 300); do
    [ -S "$D/c.sock" ] && ctr_ version >/dev/null 2>&1 && break
    kill -0 "$CTD_PID" 2>/dev/null || { cat "$D/containerd.log" >&2; die "containerd exited"; }
    sleep 0.1
done
ctr_ version >/dev/null || die "containerd did not come up; log: $D/containerd.log"
ctr_ images import "$TAR" >/dev/null
ctr_ images ls -q | grep -qx "$IMAGE" || die "image $IMAGE missing after import"

# --- measure ----------------------------------------------------------------------------
declare -A TIMES
one() { # runtime id -> elapsed ms on stdout
    local r=$1 id=$2 t0 t1 out
    t0=$(date +%s%N)
    if ! out=$(ctr_ run --rm --runc-binary "${BIN[$r]}" "$IMAGE" "$id" true 2>&1); then
        echo "$r: ctr run failed: $out" >&2
        tail -n 20 "$D/containerd.log" >&2
        return 1
    fi
    t1=$(date +%s%N)
    # `true` prints nothing: anything else is a failure, not a measurement.
    [ -z "$out" ] || { echo "$r: ctr run printed: $out" >&2; return 1; }
    echo $(((t1 - t0) / 1000))
}
echo "containerd $(containerd --version | awk '{print $3}'), $N runs per runtime" \
    "(+$WARMUP warm-up), $(nproc) cpus" >&2
for r in "${RUNTIMES[@]}"; do echo "  $r: ${BIN[$r]}" >&2; done
for r in "${RUNTIMES[@]}"; do
    for i in $(seq "$WARMUP"); do one "$r" "warm-$r-$i" >/dev/null; done
done
for i in $(seq "$N"); do
    # alternate which runtime goes first, so neither always runs on a warmer cache
    order=("${RUNTIMES[@]}")
    if [ $((i % 2)) = 0 ]; then
        rev=(); for ((k=${#order[@]}-1; k>=0; k--)); do rev+=("${order[k]}"); done; order=("${rev[@]}")
    fi
    for r in "${order[@]}"; do
        us=$(one "$r" "b-$r-$i")
        TIMES[$r]+="$us "
    done
done

stats() { # microseconds... -> "median p90 min mean" in ms
    tr ' ' '\n' | grep . | sort -n | awk '
        { v[NR] = $1; s += $1 }
        END {
            n = NR
            med = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
            k = int(0.9 * n); if (k < 0.9 * n) k++; if (k < 1) k = 1   # nearest rank
            printf "%.1f %.1f %.1f %.1f\n", med / 1000, v[k] / 1000, v[1] / 1000, s / n / 1000
        }'
}
printf '\n%-15s %5s %10s %10s %10s %10s\n' runtime runs median_ms p90_ms min_ms mean_ms
declare -A MED P90
for r in "${RUNTIMES[@]}"; do
    read -r med p90 min mean < <(echo "${TIMES[$r]}" | stats)
    MED[$r]=$med P90[$r]=$p90
    printf '%-15s %5s %10s %10s %10s %10s\n' "$r" "$N" "$med" "$p90" "$min" "$mean"
done
if [ -n "${MED[runc]:-}" ] && [ -n "${MED[proxmox-lxcri]:-}" ]; then
    awk -v a="${MED[proxmox-lxcri]}" -v b="${MED[runc]}" -v c="${P90[proxmox-lxcri]}" \
        -v d="${P90[runc]}" 'BEGIN {
            printf "\nratio proxmox-lxcri/runc: median %.2fx, p90 %.2fx\n", a / b, c / d }'
fi
if [ -n "$PVE" ] && [ -n "${MED[proxmox-lxcri]:-}" ]; then
    awk -v a="${MED[pve-lxc]}" -v b="${MED[proxmox-lxcri]}" -v c="${MED[runc]:-0}" 'BEGIN {
        printf "ratio pve-lxc/lxc engine: median %.2fx", a / b
        if (c > 0) printf "; pve-lxc/runc: %.2fx", a / c
        printf "\n" }'
    echo "Proxmox API requests per operation on pve-lxc (mean over the timed runs):"
    jq -r 'select(.id | test("^b-pve-lxc-")) | "\(.operation) \(.api_calls)"' \
        "/run/containerd/runc/$NS/runtime/events.log" |
        awk '{ n[$1]++; s[$1] += $2 } END { for (o in n) printf "  %-8s %.1f\n", o, s[o] / n[o] }' | sort
fi
