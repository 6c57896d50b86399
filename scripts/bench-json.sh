#!/usr/bin/env bash
# The record path users run: JSON lines from a file. Writes N records (85
# bytes each: {"event_id","visit_id","event_time","page"}, 1,000 visits,
# event times 1 ms apart) once, then runs a keyed 1-minute tumbling COUNT by
# visit_id (discard sink) with the release binary, three times at
# parallelism 1 pinned to one core (taskset -c 0) and three times at
# parallelism 2; prints each run's summary line and records/s.
# Usage: scripts/bench-json.sh [records, default 5000000]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
records="${1:-5000000}"
bin="$(bench_streamjob)"
work="$(visits_bench "$records")"
echo "$(bench_build), $(nproc) cores, $records records of $(head -1 "$work/visits.jsonl" | wc -c) bytes"
for p in 1 2; do
  pin=()
  [ "$p" = 1 ] && pin=(taskset -c 0)
  for _ in 1 2 3; do
    start=$(date +%s.%N)
    line=$("${pin[@]}" "$bin" run "$work/job.yaml" --parallelism "$p" --control-address off 2>&1 | grep finished)
    end=$(date +%s.%N)
    python3 -c "import sys; s=float(sys.argv[2])-float(sys.argv[1]); print(f'parallelism $p: {s:.2f} s whole process, {int(sys.argv[3])/s/1e6:.2f}M records/s')" "$start" "$end" "$records"
    echo "  $line"
  done
done
