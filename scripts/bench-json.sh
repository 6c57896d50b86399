#!/usr/bin/env bash
# The record path users run: JSON lines from a file. Writes N records (85
# bytes each: {"event_id","visit_id","event_time","page"}, 1,000 visits,
# event times 1 ms apart) once, then runs a keyed 1-minute tumbling COUNT by
# visit_id (discard sink) with the release binary, ROUNDS times (default 3)
# each of:
#   - parallelism 1 pinned to one core (taskset -c 0);
#   - parallelism 2;
#   - two copies of the parallelism-1 job at once, one pinned to each core:
#     what this machine's two cores give two jobs that share nothing, the
#     most a job at parallelism 2 could get from them. (On a shared VM the
#     second core can be slower while both are busy; this shows how much.)
# Prints each run's time, then the medians and the ratios.
# Usage: [ROUNDS=8] scripts/bench-json.sh [records, default 5000000]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
records="${1:-5000000}"
rounds="${ROUNDS:-3}"
bin="$(bench_streamjob)"
work="$(visits_bench "$records")"
# The second copy's own folder (its state lives beside its job file).
copy="$work/copy"
mkdir -p "$copy"
cp "$work/job.yaml" "$copy/job.yaml"
ln -sf ../visits.jsonl "$copy/visits.jsonl"
times="$(mktemp)"
trap 'rm -f "$times" "$times.a" "$times.b"' EXIT
echo "$(bench_build), $(nproc) cores, $records records of $(head -1 "$work/visits.jsonl" | wc -c) bytes, $rounds rounds"

# Seconds a command takes, whole process.
timed() {
  local start end
  start=$(date +%s.%N)
  "$@" >/dev/null 2>&1
  end=$(date +%s.%N)
  python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.3f}')" "$start" "$end"
}
pair() {
  timed taskset -c 0 "$bin" run "$work/job.yaml" --parallelism 1 --control-address off >"$times.a" &
  timed taskset -c 1 "$bin" run "$copy/job.yaml" --parallelism 1 --control-address off >"$times.b"
  wait
  echo "$(cat "$times.a") $(cat "$times.b")"
}

for round in $(seq "$rounds"); do
  p1=$(timed taskset -c 0 "$bin" run "$work/job.yaml" --parallelism 1 --control-address off)
  p2=$(timed "$bin" run "$work/job.yaml" --parallelism 2 --control-address off)
  read -r a b < <(pair)
  echo "round $round: parallelism 1 ${p1} s, parallelism 2 ${p2} s, two copies at once ${a} s and ${b} s"
  echo "$p1 $p2 $a $b" >>"$times"
done
python3 - "$records" "$times" <<'PY'
import statistics, sys
records = int(sys.argv[1])
rows = [list(map(float, line.split())) for line in open(sys.argv[2])]
p1 = statistics.median(r[0] for r in rows)
p2 = statistics.median(r[1] for r in rows)
# Two copies finish when the slower one does.
both = statistics.median(max(r[2], r[3]) for r in rows)
print(f"medians: parallelism 1 {p1:.3f} s ({records / p1 / 1e6:.2f}M records/s), "
      f"parallelism 2 {p2:.3f} s ({records / p2 / 1e6:.2f}M records/s, {p1 / p2:.2f}x parallelism 1)")
print(f"two copies at once: {both:.3f} s for the slower ({2 * records / both / 1e6:.2f}M records/s "
      f"together, {2 * p1 / both:.2f}x parallelism 1): parallelism 2 gets "
      f"{(p1 / p2) / (2 * p1 / both):.0%} of what the two cores give two separate jobs")
PY
