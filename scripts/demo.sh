#!/usr/bin/env bash
# The demo command: installs what the build needs (not the test servers),
# builds only the `streamjob` binary, then runs `streamjob demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
scripts/deps.sh build
cargo run -q -p streamjob-runtime --bin streamjob -- demo "$@"
