#!/bin/bash
# Run every test (as root: the tests run real LXC containers and containerd).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo test --workspace --no-fail-fast "$@"
