#!/bin/bash
# Benchmark: `docker run --rm IMAGE true` and `podman run --rm IMAGE true`,
# runc vs proxmox-lxcri (lxc engine), alternating in one run on the same
# image. Prints median / p90 in ms per client and runtime and the
# proxmox-lxcri/runc median ratios. Stops on the first failed run (exit
# status, or any output from a container that prints nothing).
#
#   bench/clients.sh [-n N]        (root; default N=20)
#
# Starts a private dockerd (own data/exec root, socket, no iptables, no
# bridge; both runtimes registered in its daemon.json) and a private Podman
# store (vfs), both under a temp dir in /tmp; the host's Docker/Podman state
# is not touched. Needs docker.io, podman, conmon, skopeo, umoci, jq
# (scripts/install-deps.sh).
set -euo pipefail
n=20
[ "${1:-}" = "-n" ] && n=$2
[[ $n =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] || { echo "-n wants a positive number" >&2; exit 2; }
cd "$(dirname "$0")/.."
die() { echo "bench/clients.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root"
for t in dockerd podman conmon skopeo umoci jq; do
    command -v $t >/dev/null || die "$t not found (scripts/install-deps.sh installs it)"
done
runc=$(readlink -f "${RUNC:-$(command -v runc || echo /usr/sbin/runc)}")
lxcri=${PROXMOX_LXCRI:-target/x86_64-unknown-linux-gnu/release/proxmox-lxcri}
[ -x "$lxcri" ] || cargo build --release -q -p proxmox-lxcri
lxcri=$(readlink -f "$lxcri")
docker=/usr/bin/docker   # the client that matches Debian's dockerd
[ -x $docker ] || docker=$(command -v docker)

d=$(mktemp -d /tmp/lxcri-bc.XXXXXX)
image=localhost/busybox:test
dk_pid=
cleanup() {
    set +e
    if [ -n "$dk_pid" ]; then
        $docker -H "unix://$d/d.sock" ps -aq | xargs -r $docker -H "unix://$d/d.sock" rm -f >/dev/null
        kill "$dk_pid"; wait "$dk_pid" 2>/dev/null
    fi
    pm rm -af >/dev/null 2>&1
    grep -o " $d[^ ]*" /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l 2>/dev/null
    rm -rf "$d"
    for h in /sys/fs/cgroup/*/lxcri-bench; do
        [ -d "$h" ] && find "$h" -depth -type d -exec rmdir {} \; 2>/dev/null
    done
}
trap cleanup EXIT

scripts/build-test-image.sh target/test-image/busybox.tar
skopeo copy -q "oci-archive:target/test-image/busybox.tar:test" "docker-archive:$d/bb.tar:$image"

# --- dockerd --------------------------------------------------------------
jq -n --arg d "$d" --arg runc "$runc" --arg lxcri "$lxcri" '{
    "data-root": "\($d)/data", "exec-root": "\($d)/x", "pidfile": "\($d)/docker.pid",
    "deprecated-key-path": "\($d)/key.json", "hosts": ["unix://\($d)/d.sock"],
    "iptables": false, "ip6tables": false, "ip-forward": false, "ip-masq": false,
    "bridge": "none", "storage-driver": "vfs", "cgroup-parent": "/lxcri-bench",
    "runtimes": {"bench-runc": {"path": $runc}, "bench-lxcri": {"path": $lxcri}}}' >"$d/daemon.json"
dockerd --config-file "$d/daemon.json" >"$d/dockerd.log" 2>&1 &
dk_pid=$!
dk() { $docker -H "unix://$d/d.sock" "$@"; }
for _ in $(seq 100); do dk version >/dev/null 2>&1 && break; sleep 0.2; done
dk version >/dev/null || die "dockerd did not come up: $(tail -5 "$d/dockerd.log")"
dk load -q -i "$d/bb.tar" >/dev/null

# --- podman ---------------------------------------------------------------
cat >"$d/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$d/events.log"
EOF
pm() {
    CONTAINERS_CONF=$d/containers.conf podman --root "$d/pr" --runroot "$d/prr" \
        --tmpdir "$d/pt" --storage-driver vfs "$@"
}
pm load -q -i target/test-image/busybox.tar >/dev/null

# --- measure --------------------------------------------------------------
# client runtime command... ; prints microseconds; dies on failure or output
run_cmd() {
    local client=$1 rt=$2; shift 2
    case $client/$rt in
        docker/runc) dk run --rm --network none --runtime bench-runc "$image" "$@" ;;
        docker/proxmox-lxcri) dk run --rm --network none --runtime bench-lxcri "$image" "$@" ;;
        podman/runc) pm --runtime "$runc" run --rm --network none --cgroup-parent /lxcri-bench "$image" "$@" ;;
        podman/proxmox-lxcri) pm --runtime "$lxcri" run --rm --network none --cgroup-parent /lxcri-bench "$image" "$@" ;;
    esac
}
one() {
    local t0 t1 out
    t0=$(date +%s%N)
    out=$(run_cmd "$1" "$2" true 2>&1) || die "$1 run through $2 failed: $out"
    t1=$(date +%s%N)
    [ -z "$out" ] || die "$1 run through $2 printed: $out"
    echo $(((t1 - t0) / 1000))
}
declare -A T
for c in docker podman; do
    for r in runc proxmox-lxcri; do
        out=$(run_cmd $c $r echo bench-ok 2>&1) || die "$c through $r: $out"
        [ "$out" = bench-ok ] || die "$c through $r printed '$out', not bench-ok"
        one $c $r >/dev/null   # warm-up
    done
done
echo "$n runs per client and runtime, alternating; $(nproc) cpus" >&2
for i in $(seq "$n"); do
    for c in docker podman; do
        if [ $((i % 2)) = 0 ]; then order="runc proxmox-lxcri"; else order="proxmox-lxcri runc"; fi
        for r in $order; do
            us=$(one $c $r)
            T[$c/$r]+="$us "
        done
    done
done
stats() { tr ' ' '\n' | grep . | sort -n | awk '{v[NR]=$1} END {
    m = (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2
    k = int(0.9 * NR); if (k < 0.9 * NR) k++
    printf "%.1f %.1f\n", m/1000, v[k]/1000 }'; }
printf '%-8s %-15s %5s %10s %10s\n' client runtime runs median_ms p90_ms
for c in docker podman; do
    for r in runc proxmox-lxcri; do
        read -r m p < <(echo "${T[$c/$r]}" | stats)
        printf '%-8s %-15s %5d %10s %10s\n' $c $r "$n" "$m" "$p"
        eval "M_${c}_${r//-/_}=$m"
    done
done
awk -v a="$M_docker_proxmox_lxcri" -v b="$M_docker_runc" -v c="$M_podman_proxmox_lxcri" -v e="$M_podman_runc" \
    'BEGIN {printf "ratio proxmox-lxcri/runc (median): docker %.2fx, podman %.2fx\n", a/b, c/e}'
