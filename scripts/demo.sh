#!/bin/bash
# Fresh Debian 12, as root: install what is needed, build, and run one
# container on the embedded lxc engine, printing its output.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release -q
bin=$PWD/target/x86_64-unknown-linux-gnu/release/proxmox-lxcri

bundle=$(mktemp -d /tmp/proxmox-lxcri-demo.XXXXXX)
trap 'rm -rf "$bundle"' EXIT
mkdir -p "$bundle"/rootfs/{bin,proc,sys,dev,tmp,etc}
cp /bin/busybox "$bundle/rootfs/bin/"
for a in sh echo cat hostname id uname; do ln -s busybox "$bundle/rootfs/bin/$a"; done
"$bin" spec --bundle "$bundle"
# Not a terminal, so that it runs the same from scripts and CI.
jq '.process.terminal = false | .hostname = "demo"
    | .process.args = ["sh", "-c", "echo hello from $(hostname), pid $$, $(id -u):$(id -g), kernel $(uname -r)"]' \
    "$bundle/config.json" > "$bundle/config.json.new"
mv "$bundle/config.json.new" "$bundle/config.json"
"$bin" run --bundle "$bundle" "demo-$$"
