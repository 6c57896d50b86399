#!/usr/bin/env bash
# Regenerates the StreamJob CRD from the Rust types: crds/streamjob.yaml and
# the Helm chart's copy (a test and scripts/chart.sh fail while they differ).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
# The operator links no stream engine (no RocksDB, no librdkafka): its own
# build is quick.
cargo run --quiet -p streamjob-operator --bin crdgen > crds/streamjob.yaml
cp crds/streamjob.yaml charts/streamjob-operator/crds/streamjob.yaml
echo "wrote crds/streamjob.yaml and charts/streamjob-operator/crds/streamjob.yaml"
