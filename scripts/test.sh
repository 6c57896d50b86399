#!/usr/bin/env bash
# The test command: installs what the build needs, checks formatting and
# lints, validates the Helm chart, and runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
scripts/deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
scripts/chart.sh
cargo nextest run --workspace --no-fail-fast
