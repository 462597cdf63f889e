#!/bin/bash
# Benchmark: boot-to-process time of a container (create + start until the
# process's first line of output) and the host memory it takes while it
# runs, on the lxc, pve-lxc and pve-vm engines in one run, alternating, on
# the same busybox bundle. pve-lxc and pve-vm run against a pve-emulator of
# this script's own; pve-vm boots Debian's cloud kernel in QEMU with TCG
# (PVE_EMULATOR_QEMU_KVM=1 uses KVM where /dev/kvm works; nested KVM hangs
# on the machines this was written on). Memory: VmRSS of the container's
# host processes (`proxmox-lxcri ps`), for pve-vm plus its QEMU. create_ms:
# the create alone (for pve-vm: API, disk, and the boot until the agent is
# ready); the rest is start until the first output.
# Stops on the first run that fails or prints nothing in time.
#
#   bench/vm.sh [-n N]      (root; default N=5)
#   PROXMOX_LXCRI=...  PVE_EMULATOR=...   default target/x86_64-unknown-linux-gnu/release/*
set -euo pipefail
n=5
[ "${1:-}" = "-n" ] && n=$2
cd "$(dirname "$0")/.."
T=${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-gnu/release
lxcri=${PROXMOX_LXCRI:-$T/proxmox-lxcri}
emu=${PVE_EMULATOR:-$T/pve-emulator}
[ -x "$lxcri" ] && [ -x "$emu" ] || cargo build --release -q -p proxmox-lxcri -p pve-emulator
lxcri=$(readlink -f "$lxcri")
die() { echo "bench/vm.sh: $*" >&2; exit 1; }

D=$(mktemp -d /tmp/lxcri-vmbench.XXXXXX)
chmod 711 "$D"
BRIDGE=lxvmb$$
EMU_PID=
cleanup() {
    set +e
    for id in $("$lxcri" --root "$D/root" --config "$D/lxcri.toml" list -q 2>/dev/null); do
        "$lxcri" --root "$D/root" --config "$D/lxcri.toml" delete -f "$id" >/dev/null 2>&1
    done
    for p in "$D"/pve/run/qemu-server/*.pid; do [ -e "$p" ] && kill -9 "$(cat "$p")" 2>/dev/null; done
    [ -n "$EMU_PID" ] && kill "$EMU_PID" 2>/dev/null && wait "$EMU_PID" 2>/dev/null
    ip link del "$BRIDGE" 2>/dev/null
    rm -rf "$D"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$D/pve/storage"
printf 'bench-root' >"$D/pw"; chmod 600 "$D/pw"
"$emu" --listen 127.0.0.1:0 --data-dir "$D/pve" --root-password-file "$D/pw" \
    --storage "local=dir:$D/pve/storage" --bridge "$BRIDGE" >"$D/emu.out" 2>"$D/emu.log" &
EMU_PID=$!
for _ in $(seq 100); do grep -q '^listening' "$D/emu.out" 2>/dev/null && break; sleep 0.1; done
ADDR=$(sed -n 's/^listening //p' "$D/emu.out")
[ -n "$ADDR" ] || die "pve-emulator did not start: $(cat "$D/emu.log")"
cat >"$D/lxcri.toml" <<TOML
default_backend = "lxc"
[[routing]]
pattern = "^pvelxc-"
backend = "pve-lxc"
[[routing]]
pattern = "^pvevm-"
backend = "pve-vm"
[pve]
url = "https://$ADDR"
node = "pve"
username = "root@pam"
password_file = "$D/pw"
fingerprint = "$(cat "$D/pve/fingerprint")"
storage = "local"
bridge = "$BRIDGE"
config_dir = "$D/pve/nodes/pve/lxc"
qemu_run_dir = "$D/pve/run/qemu-server"
task_timeout_secs = 120
TOML

b=$D/bundle
mkdir -p "$b"/rootfs/{bin,proc,sys,dev,tmp,etc,root}
cp /bin/busybox "$b/rootfs/bin/"
for a in sh echo sleep; do ln -s busybox "$b/rootfs/bin/$a"; done
"$lxcri" spec --bundle "$b"
jq '.process.terminal = false | .process.args = ["sh", "-c", "echo ready; exec sleep 1000"]
    | .root.readonly = false | .hostname = "bench"
    | .mounts |= map(select(.destination != "/sys/fs/cgroup"))' \
    "$b/config.json" >"$b/c" && mv "$b/c" "$b/config.json"

rt() { "$lxcri" --root "$D/root" --config "$D/lxcri.toml" "$@"; }
rss_kb() { local v; v=$(awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null) || true; echo "${v:-0}"; }

# One container: ms until its first output line, and host memory (KiB).
one() {
    local id=$1 out=$D/$1.out s c e t mem=0 p vmid
    s=$(date +%s%N)
    rt create --bundle "$b" --pid-file "$D/$id.pid" "$id" >"$out" 2>"$D/$id.err" </dev/null ||
        die "create $id failed: $(cat "$D/$id.err")"
    c=$(date +%s%N)
    rt start "$id" || die "start $id failed"
    t=0
    until grep -q ready "$out"; do
        t=$((t + 1)); [ $t -lt 30000 ] || die "$id printed nothing in time"
        sleep 0.005
    done
    e=$(date +%s%N)
    for p in $(rt ps --format json "$id" | jq -r '.[]'); do mem=$((mem + $(rss_kb "$p"))); done
    if [[ $id == pvevm-* ]]; then
        vmid=$(jq -r '.pve.vmid' "$D/root/containers/$id/state.json")
        mem=$((mem + $(rss_kb "$(cat "$D/pve/run/qemu-server/$vmid.pid")")))
    fi
    rt kill "$id" KILL || true
    rt delete -f "$id" || die "delete $id failed"
    echo "$(( (e - s) / 1000000 )) $mem $(( (c - s) / 1000000 ))"
}

declare -A ms kb cr
engines=(lxc pvelxc pvevm)
for i in $(seq 1 $((n + 1))); do
    for en in "${engines[@]}"; do
        read -r m k cm < <(one "$en-$i")
        # The first round warms caches (and builds the initramfs): untimed.
        if [ "$i" -gt 1 ]; then ms[$en]+="$m "; kb[$en]+="$k "; cr[$en]+="$cm "; fi
    done
done
med() { printf '%s\n' $1 | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
printf '%-8s %5s %18s %10s %10s %16s\n' engine runs boot_to_output_ms min_ms create_ms host_mem_MiB
for en in "${engines[@]}"; do
    m=$(med "${ms[$en]}"); lo=$(printf '%s\n' ${ms[$en]} | sort -n | head -1)
    k=$(med "${kb[$en]}")
    name=${en/pvelxc/pve-lxc}; name=${name/pvevm/pve-vm}
    printf '%-8s %5d %18s %10s %10s %16s\n' "$name" "$n" "$m" "$lo" "$(med "${cr[$en]}")" "$((k / 1024))"
done
l=$(med "${ms[lxc]}"); p=$(med "${ms[pvelxc]}"); v=$(med "${ms[pvevm]}")
awk -v l="$l" -v p="$p" -v v="$v" 'BEGIN {printf "ratio pve-vm/lxc %.1fx, pve-vm/pve-lxc %.1fx (medians; TCG)\n", v/l, v/p}'
echo "Proxmox API requests per operation on pve-vm (mean over all runs):"
jq -r 'select(.id | test("^pvevm-")) | "\(.operation) \(.api_calls)"' "$D/root/runtime/events.log" |
    awk '{ n[$1]++; s[$1] += $2 } END { for (o in n) printf "  %-8s %.1f\n", o, s[o] / n[o] }' | sort
