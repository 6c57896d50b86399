#!/usr/bin/env bash
# Regenerates the StreamJob CRD from the Rust types: crds/streamjob.yaml and
# the Helm chart's copy (a test and scripts/chart.sh fail while they differ).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
# --all-targets: the same feature set as the tests, so the build reuses their
# artifacts (a plain `cargo run` would resolve features anew and rebuild RocksDB).
cargo build --quiet -p streamjob-operator --all-targets
"$CARGO_TARGET_DIR/debug/crdgen" > crds/streamjob.yaml
cp crds/streamjob.yaml charts/streamjob-operator/crds/streamjob.yaml
echo "wrote crds/streamjob.yaml and charts/streamjob-operator/crds/streamjob.yaml"
