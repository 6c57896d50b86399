#!/usr/bin/env bash
# How a job scales with workers and pods, for a machine with more cores
# than parallelism 2 needs. Runs, with the release binary, at each
# parallelism of PARALLELISMS (default "1 2 4 8", those above the cores
# skipped), three times each, and prints wall time and records/s:
#   - one-file: bench-json.sh's job (N visit records in one JSON file,
#     1-minute tumbling COUNT by visit_id, discard sink). One worker reads
#     the file; every worker parses parts of it.
#   - 16-files: the same records dealt round-robin into 16 files, so each
#     worker reads files of its own.
#   - generated: N generated events, 10,000 keys, one split per worker.
#   - pods: the 16-files job over as many processes on 127.0.0.1 as
#     workers, one worker each (parallelism 2 and up).
#   - kafka: `streamjob bench --kafka`, exactly-once to librdkafka's
#     in-process mock cluster, N/2 events, with its consume-only ceiling.
# Parallelism 1 is pinned to one core (taskset -c 0) where taskset exists.
# STREAMJOB_BIN=/path/to/streamjob runs a given build (no cargo needed);
# JOBS="one-file 16-files" runs only those (of one-file, 16-files,
# generated, pods, kafka); RUNS=1 runs each once.
# Usage: scripts/bench-scaling.sh [records, default 5000000]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
records="${1:-5000000}"
bin="$(bench_streamjob)"
work="$(visits_bench "$records")"
cores=$(nproc)
echo "$(bench_build), $cores cores ($(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)), $records records"

if [ ! -s "$work/files/visits-15.jsonl" ]; then
  mkdir -p "$work/files.tmp"
  (cd "$work/files.tmp" && split -n r/16 -d -a 2 --additional-suffix .jsonl ../visits.jsonl visits-)
  rm -rf "$work/files" && mv "$work/files.tmp" "$work/files"
fi
sed -e 's|^source: .*|source: {file: {paths: [FILES]}}|' "$work/job.yaml" >"$work/files.yaml"
list=$(cd "$work" && ls files/*.jsonl | paste -sd, -)
sed -i "s|FILES|$list|" "$work/files.yaml"
generated_bench "$work" "$records"
token="$work/pods-token"

pin() {
  if [ "$1" = 1 ] && command -v taskset >/dev/null; then echo "taskset -c 0"; fi
}

jobs=" ${JOBS:-one-file 16-files generated pods kafka} "
wanted() { [[ "$jobs" == *" $1 "* ]]; }
for p in ${PARALLELISMS:-1 2 4 8}; do
  [ "$p" -le "$cores" ] || continue
  for job in job files generated; do
    label=$(case $job in job) echo one-file ;; files) echo 16-files ;; *) echo generated ;; esac)
    wanted "$label" || continue
    for _ in $(seq "${RUNS:-3}"); do
      start=$(date +%s.%N)
      $(pin "$p") "$bin" run "$work/$job.yaml" --parallelism "$p" --control-address off \
        --state-dir "$work/state" >/dev/null 2>&1
      rate "$start" "$(date +%s.%N)" "$records" "$label p=$p"
    done
  done
  if [ "$p" -ge 2 ] && wanted pods; then
    for _ in $(seq "${RUNS:-3}"); do
      peers=$(for _ in $(seq "$p"); do printf '127.0.0.1:%s,' "$(free_port)"; done)
      start=$(date +%s.%N)
      pids=()
      for i in $(seq 0 $((p - 1))); do
        "$bin" run "$work/files.yaml" --parallelism "$p" --pods "$p" --pod-index "$i" --peers "${peers%,}" \
          --control-token-file "$token" --control-address off --state-dir "$work/state-$i" >/dev/null 2>&1 &
        pids+=($!)
      done
      for pid in "${pids[@]}"; do wait "$pid"; done
      rate "$start" "$(date +%s.%N)" "$records" "16-files over $p pods"
    done
  fi
  wanted kafka || continue
  $(pin "$p") "$bin" bench --kafka --events $((records / 2)) --checkpoint-interval 1s --parallelism "$p" 2>/dev/null |
    awk -v label="kafka p=$p" -F= '/^consume_only/ {c=$2} /^events_per_second/ {e=$2}
      END {printf "%s: job %.2fM events/s, consume-only ceiling %.2fM\n", label, e/1e6, c/1e6}'
done
