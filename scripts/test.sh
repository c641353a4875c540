#!/usr/bin/env bash
# The whole test suite: installs missing system packages, starts the test Kafka broker
# (a real Apache Kafka from Maven Central, on 127.0.0.1:9092), runs every test of every
# crate, and stops the broker.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/kafka.sh start
trap 'scripts/kafka.sh stop' EXIT
cargo test --workspace --locked
