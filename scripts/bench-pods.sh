#!/usr/bin/env bash
# What crossing processes costs: the same job at parallelism 2, once in one
# process (workers exchange records over in-memory channels) and once over
# two processes on 127.0.0.1 (`--pods 2`, one worker each: records for the
# other worker cross the exchange's TCP connection). Two workloads, three
# runs each: the JSON file job of bench-json.sh (one file, so worker 0 reads
# it all and sends worker 1 its half of the keys), and generated events
# (one split per worker; half of each worker's events go to the other).
# Prints wall time and records/s per run.
# Usage: scripts/bench-pods.sh [records, default 5000000]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
records="${1:-5000000}"
bin="$(bench_streamjob)"
work="$(visits_bench "$records")"
generated_bench "$work" "$records"
token="$work/pods-token"
echo "$(bench_build), $(nproc) cores, $records records"
for job in job generated; do
  for _ in 1 2 3; do
    start=$(date +%s.%N)
    "$bin" run "$work/$job.yaml" --parallelism 2 --control-address off --state-dir "$work/state-1" 2>/dev/null
    rate "$start" "$(date +%s.%N)" "$records" "$job, 1 process, 2 workers"
    peers="127.0.0.1:$(free_port),127.0.0.1:$(free_port)"
    start=$(date +%s.%N)
    pids=()
    for i in 0 1; do
      "$bin" run "$work/$job.yaml" --parallelism 2 --pods 2 --pod-index "$i" --peers "$peers" \
        --control-token-file "$token" --control-address off --state-dir "$work/state-$i" 2>/dev/null &
      pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid"; done
    rate "$start" "$(date +%s.%N)" "$records" "$job, 2 processes, 1 worker each"
  done
done
