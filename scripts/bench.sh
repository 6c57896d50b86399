#!/usr/bin/env bash
# Reproduces the README's benchmark table: builds the release binary, then
# runs each window kind at parallelism 1 and 2, three times each, and prints
# the runs and their median in events/s. Usage: scripts/bench.sh [extra
# `streamjob bench` flags, e.g. --events 2000000]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
bin="$(bench_streamjob)"
echo "$(bench_build), $(nproc) cores"
for window in tumbling sliding session; do
  for p in 1 2; do
    runs=()
    for _ in 1 2 3; do
      runs+=("$("$bin" bench --window "$window" --parallelism "$p" "$@" | sed -n 's/^events_per_second=//p')")
    done
    median=$(printf '%s\n' "${runs[@]}" | sort -n | sed -n 2p)
    echo "$window p=$p: median $median (runs ${runs[*]})"
  done
done
