#!/usr/bin/env bash
# The demo command: installs what the build needs, then `streamjob demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
scripts/deps.sh
cargo run -q -p streamjob-runtime --bin streamjob -- demo "$@"
