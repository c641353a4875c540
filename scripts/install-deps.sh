#!/usr/bin/env bash
# Installs the system packages Weir needs to build on Debian/Ubuntu (only what is missing).
# Today: a C toolchain and pkg-config (zstd's bindings compile C). The RocksDB and Kafka
# issues add clang/libclang-dev, cmake and libcurl4-openssl-dev here.
set -euo pipefail

packages=(build-essential pkg-config)

missing=()
for package in "${packages[@]}"; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done

if [ "${#missing[@]}" -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi

command -v cargo >/dev/null || { echo "cargo not found: install the Rust toolchain (rustup) first" >&2; exit 1; }
