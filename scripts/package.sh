#!/bin/bash
# Build the Debian package of proxmox-lxcri with dpkg-deb from a staged tree
# (no cargo-deb needed): binaries (runtime, pve-emulator, CNI plugin), a commented default config, systemd units
# (metrics exporter; hourly gc), man pages and shell completions generated
# from the CLI, the Grafana dashboard and the docs.
#   scripts/package.sh [--debug]      (--debug: package the debug build, faster)
# The last line printed is the path of the .deb.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=release
[ "${1:-}" = --debug ] && profile=debug
command -v dpkg-deb >/dev/null || { echo "package: dpkg-deb missing" >&2; exit 1; }

flag=(); [ $profile = release ] && flag=(--release)
cargo build "${flag[@]}" -p proxmox-lxcri -p pve-emulator -p proxmox-lxcri-cni >&2
bin=target/x86_64-unknown-linux-gnu/$profile
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
[ -n "$version" ] || { echo "package: no version in Cargo.toml" >&2; exit 1; }
arch=$(dpkg --print-architecture)
out=target/debian
stage=$out/stage
rm -rf "$stage"
mkdir -p "$stage/DEBIAN" "$stage/usr/bin" "$stage/etc/proxmox-lxcri" "$stage/etc/default" \
    "$stage/lib/systemd/system" "$stage/usr/share/man/man1" \
    "$stage/usr/share/bash-completion/completions" "$stage/usr/share/zsh/vendor-completions" \
    "$stage/usr/share/fish/vendor_completions.d" "$stage/usr/share/doc/proxmox-lxcri/grafana" \
    "$stage/usr/lib/cni"

install -m 0755 "$bin/proxmox-lxcri" "$bin/pve-emulator" "$stage/usr/bin/"
# The CNI plugin where Debian's containernetworking-plugins keeps theirs.
install -m 0755 "$bin/proxmox-lxcri-cni" "$stage/usr/lib/cni/"
strip --strip-unneeded "$stage/usr/bin/proxmox-lxcri" "$stage/usr/bin/pve-emulator" \
    "$stage/usr/lib/cni/proxmox-lxcri-cni" 2>/dev/null || true
install -m 0644 packaging/config.toml "$stage/etc/proxmox-lxcri/config.toml"
install -m 0644 packaging/default "$stage/etc/default/proxmox-lxcri"
install -m 0644 packaging/systemd/* "$stage/lib/systemd/system/"

# Man pages and completions come from the CLI definition itself.
gen=$out/gen
rm -rf "$gen"
"$bin/proxmox-lxcri" generate man "$gen/man"
"$bin/proxmox-lxcri" generate completions "$gen/completions"
for m in "$gen"/man/*.1; do
    gzip -9n <"$m" >"$stage/usr/share/man/man1/$(basename "$m").gz"
done
install -m 0644 "$gen/completions/proxmox-lxcri.bash" "$stage/usr/share/bash-completion/completions/proxmox-lxcri"
install -m 0644 "$gen/completions/_proxmox-lxcri" "$stage/usr/share/zsh/vendor-completions/_proxmox-lxcri"
install -m 0644 "$gen/completions/proxmox-lxcri.fish" "$stage/usr/share/fish/vendor_completions.d/proxmox-lxcri.fish"

doc=$stage/usr/share/doc/proxmox-lxcri
install -m 0644 README.md docs/*.md "$doc/"
install -m 0644 dashboards/*.json "$doc/grafana/"
cat >"$doc/copyright" <<COPY
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: proxmox-lxcri
License: Apache-2.0

Files: *
Copyright: the proxmox-lxcri authors
License: Apache-2.0
 On Debian systems the full text is in /usr/share/common-licenses/Apache-2.0.
COPY
printf 'proxmox-lxcri (%s-1) unstable; urgency=medium\n\n  * Built by scripts/package.sh from %s.\n\n -- proxmox-lxcri builders <root@localhost>  %s\n' \
    "$version" "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" "$(date -R)" \
    | gzip -9n >"$doc/changelog.Debian.gz"

size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat >"$stage/DEBIAN/control" <<CTRL
Package: proxmox-lxcri
Version: $version-1
Architecture: $arch
Maintainer: proxmox-lxcri builders <root@localhost>
Installed-Size: $size
Depends: lxc
Suggests: zfsutils-linux | zfs-fuse, prometheus, containerd, linux-image-cloud-amd64, qemu-system-x86
Section: admin
Priority: optional
Homepage: https://github.com/proxmox-lxcri/proxmox-lxcri
Description: OCI runtime (runc-compatible) running containers as LXC / Proxmox VE guests
 proxmox-lxcri is driven by containerd like runc, and runs each container
 with liblxc on this host, or as a Proxmox VE CT or QEMU VM through the
 Proxmox API (a VM boots linux-image-cloud-amd64 with this binary as init).
 Includes pve-emulator (a Proxmox VE node in a box for trying it out), a
 CNI plugin (/usr/lib/cni/proxmox-lxcri-cni), a
 Prometheus exporter (proxmox-lxcri metrics serve), proxmox-lxcri doctor,
 systemd units (exporter, hourly gc; none enabled on install) and a Grafana
 dashboard.
CTRL
printf '/etc/proxmox-lxcri/config.toml\n/etc/default/proxmox-lxcri\n' >"$stage/DEBIAN/conffiles"
install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm "$stage/DEBIAN/"

deb=$out/proxmox-lxcri_${version}-1_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >&2
realpath "$deb"
