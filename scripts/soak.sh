#!/usr/bin/env bash
# The exactly-once soak, by hand: the kill tests of
# runtime/tests/integration/checkpoints.rs
# with many more `kill -9`s (default 200 each, checkpoints on local disk and on
# moto's S3 server) and input to match. Each kill lands at a pseudo-random
# moment; the committed output is compared with the expected windows at the
# end. Usage: scripts/soak.sh [kills]   (about 1.5 s per kill here)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
scripts/deps.sh
kills="${1:-200}"
echo "soak: $kills kills per test"
STREAMJOB_SOAK_KILLS="$kills" cargo nextest run -p streamjob-runtime --test integration \
  --no-capture -E 'test(/^checkpoints::.*exactly_once_output_across_twenty_kills/)'
