#!/usr/bin/env bash
# The whole test suite: installs system packages if missing, then runs every test of every crate.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo test --workspace --locked
