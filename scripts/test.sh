#!/usr/bin/env bash
# The test command: installs what the build needs, checks formatting and
# lints, validates the Helm chart, and runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
scripts/deps.sh test
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# The operator shares the contract crates with the runtime, never the engine.
if cargo tree -p streamjob-operator -e normal,build,dev | grep -E 'librocksdb-sys|rdkafka-sys'; then
  echo "streamjob-operator must not link RocksDB or librdkafka (see README, Repository layout)" >&2
  exit 1
fi
scripts/chart.sh
cargo nextest run --workspace --no-fail-fast
