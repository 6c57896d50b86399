#!/usr/bin/env bash
# CPU work per record on the JSON path, as instructions counted by
# valgrind's cachegrind: bench-json.sh's job (visit records, 1-minute
# tumbling COUNT by visit_id, discard sink) over 200,000 and over 2,000
# records, at parallelism 1 and 2; the difference over the 198,000 records
# between is the cost of a record, without the process's start and end.
# Unlike a run's time, the count hardly moves from run to run on a shared
# machine, so two builds can be compared by it: STREAMJOB_BIN=/path/to/an/old/binary.
# Parallelism 2 counts every thread's instructions (its CPU work, not its
# time). Beside them, the misses of cachegrind's model of this machine's
# first-level data cache: a record's bytes and items that fell out of it
# between two stages cost time that instructions do not show. Run by
# hand, like the other benchmarks.
# Usage: scripts/bench-instructions.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
# Two runs at once would run their jobs in the same folders: the second
# waits for the first.
exec 9>"${TMPDIR:-/tmp}/streamjob-bench-instructions.lock"
flock 9
command -v valgrind >/dev/null || apt_install valgrind
bin="$(bench_streamjob)"
small="$(visits_bench 2000)"
large="$(visits_bench 200000)"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

# Instructions of one run, and its first-level data cache misses as
# cachegrind simulates this machine's cache; its profile stays in $out/<name>.
counts() {
  valgrind --tool=cachegrind --cache-sim=yes --cachegrind-out-file="$out/$1" \
    "$bin" run "$2/job.yaml" --parallelism "$3" --control-address off 2>&1 >/dev/null |
    awk '/I +refs:/ { gsub(",", "", $NF); i = $NF }
         /D1 +misses:/ { gsub(",", "", $4); d = $4 }
         END { print i, d }'
}

echo "$(bench_build)"
for p in 1 2; do
  read -r base_i base_d < <(counts "small-$p" "$small" "$p")
  read -r total_i total_d < <(counts "large-$p" "$large" "$p")
  awk -v p="$p" -v i="$((total_i - base_i))" -v d="$((total_d - base_d))" 'BEGIN {
    printf "parallelism %s: %d instructions per record, %.1f first-level data cache misses per record\n", p, i / 198000, d / 198000 }'
done
# The 200,000-record run's instructions by function (cg_annotate's table,
# without its header and the program's total).
cg_annotate --show=Ir "$out/large-1" 2>/dev/null |
  awk '/file:function/ { on = 1; next } on && seen && /^$/ { exit } on && /%\)/ && !/PROGRAM TOTALS/ { seen = 1; print }' |
  sed -e 's/???://' >"$out/functions"
# Parallelism 1's instructions per record by part of the record path, as
# the README's table has them: each function falls in the first group its
# name matches.
echo "parallelism 1, per record, by part (from the 200,000-record run's profile):"
awk '{
    n = $1; gsub(",", "", n)
    if ($0 ~ /decode::|scan::|SmallVec<A>::resize|take::Take|memcmp|Extend</) g = "scanner"
    else if ($0 ~ /read_until|FileSplit|from_utf8|memmove|memcpy|memchr/) g = "reading lines, UTF-8"
    else if ($0 ~ /RecordParser|Key::new|stable_hash|parse_event_time|check_not_ahead|drop_in_place|Enricher|fill_below/) g = "key, time, event"
    else if ($0 ~ /RawBatch|take_items|read_in_parts|poll_split/) g = "batches, routing"
    else if ($0 ~ /operator|KeyedStore|watermark|Accumulator|window::/) g = "windows, watermarks"
    else g = "other"
    sum[g] += n
  }
  END { for (g in sum) printf "  %-22s %6.0f\n", g, sum[g] / 200000 }' "$out/functions" | sort
echo "the functions that cost most (share of the 200,000-record run's instructions):"
head -16 "$out/functions"
