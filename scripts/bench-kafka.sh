#!/usr/bin/env bash
# The Kafka path end to end: `streamjob bench --kafka` (2M events of
# {"key","ts"}, 10,000 keys, 1-minute tumbling COUNT, exactly-once output
# to Kafka, checkpoints every second) at parallelism 1 and 2, twice each,
# first against librdkafka's mock cluster in the job's own process, then
# against the nisshi broker in a process of its own (scripts/deps.sh builds
# it). Each run prints the consume-only ceiling (as many plain readers as
# the job has workers) beside the job's rate; nisshi's CPU time is printed
# at the end. STREAMJOB_BIN=/path/to/an/old/binary runs another build.
# Usage: scripts/bench-kafka.sh [events, default 2000000]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
events="${1:-2000000}"
nisshi="${STREAMJOB_NISSHI:-$HOME/.cache/streamjob-tools/bin/nisshi}"
if [ ! -x "$nisshi" ]; then
  echo "bench-kafka: no nisshi broker at $nisshi; scripts/deps.sh builds it (once, ~5 min)" >&2
  exit 1
fi
bin="$(bench_streamjob)"
echo "$(bench_build), $(nproc) cores, $events events"
run() {
  local where="$1" p="$2"
  shift 2
  "$bin" bench --kafka --events "$events" --checkpoint-interval 1s --parallelism "$p" "$@" 2>/dev/null |
    awk -v label="$where p=$p" -F= '/^consume_only/ {c=$2} /^records_in/ {r=$2} /^events_per_second/ {e=$2}
      END {printf "%s: job %.0fk events/s (%d records read), consume-only ceiling %.0fk\n", label, e/1000, r, c/1000}'
}
for p in 1 2; do
  for _ in 1 2; do run "mock cluster in process" "$p"; done
done
port=$(free_port)
"$nisshi" broker --listener-url "tcp://127.0.0.1:$port" --advertised-listener-url "tcp://127.0.0.1:$port" \
  --storage-engine memory://nisshi/ --silent >/dev/null 2>&1 &
broker=$!
trap 'kill $broker 2>/dev/null' EXIT
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done
for p in 1 2; do
  for _ in 1 2; do run "nisshi in its own process" "$p" --kafka-broker "127.0.0.1:$port"; done
done
echo "nisshi used $(ps -o times= -p "$broker" | tr -d ' ') s of CPU in all (producing included)"
