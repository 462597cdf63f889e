#!/bin/bash
# Test the Debian package: build it, install it into a fresh Debian 12 root
# (debootstrap --variant=minbase with lxc, cached by scripts/debian-root.sh and
# used through an overlay, so every run starts from the same fresh root),
# then in that root (chroot): `proxmox-lxcri --version`, `doctor --json`,
# one container run with the root's own lxc, and `dpkg --purge`, which must
# leave none of the package's files behind.
#   scripts/test-package.sh [--debug] [DEB]
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "test-package: run as root" >&2; exit 1; }
pkgflag=()
if [ "${1:-}" = --debug ]; then pkgflag=(--debug); shift; fi
deb=${1:-}
started=$(date +%s)
if [ -z "$deb" ]; then
    deb=$(scripts/package.sh "${pkgflag[@]}" | tail -1)
fi
[ -f "$deb" ] || { echo "test-package: no .deb at $deb" >&2; exit 1; }
base=$(scripts/debian-root.sh | tail -1)
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)

work=$(mktemp -d /var/tmp/lxcri-pkgtest.XXXXXX)
root=$work/root
mounts=()
cleanup() {
    local i
    for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do
        umount -l "${mounts[$i]}" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "test-package: FAIL: $*" >&2; exit 1; }
mnt() { mount "$@"; mounts+=("${@: -1}"); }

mkdir -p "$work/upper" "$work/ovl" "$root"
if mount -t overlay overlay -o "lowerdir=$base,upperdir=$work/upper,workdir=$work/ovl" "$root" 2>/dev/null; then
    mounts+=("$root")
else
    # No overlayfs here: a copy (slower, same result).
    cp -a "$base/." "$root/"
fi
mnt -t proc proc "$root/proc"
mnt --rbind /sys "$root/sys"
mnt --make-rslave "$root/sys" 2>/dev/null || true
mnt --rbind /dev "$root/dev"
mnt --make-rslave "$root/dev" 2>/dev/null || true
mnt -t tmpfs tmpfs "$root/run"
mkdir -p "$root/run/lock"
in_root() { chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root "$@"; }

echo "== install $(basename "$deb")"
cp "$deb" "$root/tmp/pkg.deb"
in_root dpkg -i /tmp/pkg.deb >"$work/install.log" 2>&1 || { cat "$work/install.log"; fail "dpkg -i"; }
in_root dpkg -L proxmox-lxcri >"$work/files"
in_root dpkg-query -W -f='${Conffiles}\n' proxmox-lxcri | awk 'NF {print $1}' >"$work/conffiles"
[ -s "$work/conffiles" ] || fail "no conffiles registered"

echo "== --version"
v=$(in_root proxmox-lxcri --version)
[ "$v" = "proxmox-lxcri $version" ] || fail "--version says '$v', want 'proxmox-lxcri $version'"
echo "$v"
for m in proxmox-lxcri.1.gz proxmox-lxcri-doctor.1.gz proxmox-lxcri-metrics-serve.1.gz; do
    [ -s "$root/usr/share/man/man1/$m" ] || fail "man page $m missing"
done
grep -q proxmox-lxcri "$root/usr/share/bash-completion/completions/proxmox-lxcri" || fail "bash completion"
cni=$(echo '{"cniVersion":"1.0.0"}' | in_root env CNI_COMMAND=VERSION /usr/lib/cni/proxmox-lxcri-cni) ||
    fail "CNI plugin VERSION"
echo "$cni" | jq -e '.supportedVersions | index("1.0.0")' >/dev/null || fail "CNI VERSION answer: $cni"

echo "== systemd units (systemd-analyze verify on the host, ExecStart pointing into the root)"
command -v systemd-analyze >/dev/null || fail "systemd-analyze missing (Debian package systemd)"
mkdir -p "$work/units"
for u in proxmox-lxcri-metrics.service proxmox-lxcri-gc.service proxmox-lxcri-gc.timer; do
    [ -f "$root/lib/systemd/system/$u" ] || fail "unit $u missing"
    sed "s#/usr/bin/proxmox-lxcri#$root/usr/bin/proxmox-lxcri#" "$root/lib/systemd/system/$u" >"$work/units/$u"
done
# Enabled by nothing: no symlink in any .wants directory.
[ -z "$(find "$root/etc/systemd" -name 'proxmox-lxcri*' 2>/dev/null)" ] || fail "a unit was enabled at install"
(cd "$work/units" && SYSTEMD_LOG_LEVEL=warning systemd-analyze verify --man=no ./*.service ./*.timer) >"$work/verify.log" 2>&1 \
    || { cat "$work/verify.log"; fail "systemd-analyze verify"; }
[ ! -s "$work/verify.log" ] || { cat "$work/verify.log"; fail "systemd-analyze verify complained"; }

echo "== doctor --json"
set +e
in_root proxmox-lxcri doctor --json >"$work/doctor.json"
rc=$?
set -e
jq -r '.checks[] | "\(.name): \(.status): \(.detail)"' "$work/doctor.json"
[ $rc = 0 ] || fail "doctor exited $rc"
[ "$(jq -r .healthy "$work/doctor.json")" = true ] || fail "doctor: not healthy"
[ "$(jq -r '.checks[] | select(.name=="liblxc") | .status' "$work/doctor.json")" = ok ] || fail "doctor: liblxc"

echo "== one container, with the root's lxc"
bundle=$root/root/bundle
mkdir -p "$bundle/rootfs/bin"
cp "$(command -v busybox)" "$bundle/rootfs/bin/busybox"
for a in sh echo cat; do ln -s busybox "$bundle/rootfs/bin/$a"; done
mkdir -p "$bundle/rootfs/"{proc,sys,dev,tmp,etc}
in_root proxmox-lxcri spec --bundle /root/bundle
jq '.process.terminal = false | .process.args = ["sh", "-c", "echo hello from the package; cat /proc/1/comm"] | .root.readonly = false' \
    "$bundle/config.json" >"$bundle/config.json.new"
mv "$bundle/config.json.new" "$bundle/config.json"
id=pkgtest-$$
out=$(in_root proxmox-lxcri run --bundle /root/bundle "$id" 2>"$work/run.err") || {
    cat "$work/run.err"; fail "run"; }
echo "$out"
echo "$out" | grep -qx "hello from the package" || fail "container output: $out"
in_root proxmox-lxcri state "$id" >/dev/null 2>&1 && in_root proxmox-lxcri delete --force "$id"
[ -z "$(in_root proxmox-lxcri list -q)" ] || fail "containers left"
# The events log the exporter reads was written in the root.
grep -q "\"id\":\"$id\"" "$root/run/proxmox-lxcri/runtime/events.log" || fail "no events log line"

echo "== purge"
in_root dpkg --purge proxmox-lxcri >"$work/purge.log" 2>&1 || { cat "$work/purge.log"; fail "dpkg --purge"; }
left=()
while read -r f; do
    # Directories shared with other packages (/usr/bin ...) stay; our own go.
    if [ -e "$root$f" ] && ! [ -d "$root$f" ]; then left+=("$f"); fi
done <"$work/files"
for d in /etc/proxmox-lxcri /usr/share/doc/proxmox-lxcri /run/proxmox-lxcri; do
    [ -e "$root$d" ] && left+=("$d")
done
while read -r f; do [ -e "$root$f" ] && left+=("$f"); done <"$work/conffiles"
[ ${#left[@]} = 0 ] || fail "purge left: ${left[*]}"
in_root dpkg-query -W proxmox-lxcri >/dev/null 2>&1 && fail "still registered after purge"
echo "test-package: PASS in $(($(date +%s) - started)) s ($(basename "$deb"), $(du -h "$deb" | cut -f1))"
