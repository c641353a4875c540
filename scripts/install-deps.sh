#!/usr/bin/env bash
# Installs the system packages Weir needs to build on Debian/Ubuntu (only what is missing).
# A C toolchain and pkg-config (zstd's bindings compile C); cmake and libcurl's headers for
# the bundled librdkafka (Kafka connector). Java 17 and Maven, for the test Kafka broker
# (scripts/kafka.sh), are expected on the machine. clang and libclang-dev: RocksDB's C++ build
# and the bindgen step of its Rust bindings. Python's prometheus_client: the metrics test parses
# /metrics with a real Prometheus (OpenMetrics) parser. Chromium, its driver and Python's Selenium:
# the dashboard test drives a real headless browser.
set -euo pipefail

packages=(build-essential pkg-config cmake libcurl4-openssl-dev clang libclang-dev python3-prometheus-client chromium chromium-driver python3-selenium)

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

command -v java >/dev/null || echo "note: java not found; scripts/kafka.sh (Kafka tests) needs Java 17 and Maven" >&2
command -v cargo >/dev/null || { echo "cargo not found: install the Rust toolchain (rustup) first" >&2; exit 1; }
