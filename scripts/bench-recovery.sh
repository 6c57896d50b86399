#!/usr/bin/env bash
# What a failure costs a job over pods. Two `streamjob run` processes on
# 127.0.0.1 form one job over generated events paced at 200,000 a second
# (event time follows the clock), counting each of KEYS keys in 1-minute
# windows: that is the state. Checkpoints go every 2 s to a local folder.
# After a few checkpoints, pod 1 is killed with `kill -9`, and the script
# measures:
#   detect   from the kill until pod 0 has failed and exited;
#   restore  from starting both pods again with --from-latest-checkpoint
#            until pod 0's control API says `running` (pods connected,
#            state read back from the checkpoint);
#   resume   from that start until the first checkpoint after it completes;
# and the checkpoint storage's size on disk then (the retained checkpoints
# and the state files they share). Prints one line per state size.
# Usage: scripts/bench-recovery.sh [KEYS ...] (default 100000 1000000)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
bin="$(bench_streamjob)"
work="${TMPDIR:-/tmp}/streamjob-bench-recovery"
now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2])-float(sys.argv[1]):.2f} s')" "$1" "$(now)"; }
# The newest completed checkpoint's id (0 before the first).
newest() {
  ls -d "$work"/ckpt/recovery/checkpoints/chk-*/_metadata 2>/dev/null |
    sed 's|.*/chk-||; s|/_metadata||' | sort -n | tail -1 | grep . || echo 0
}
newer_than() { [ "$(newest)" -gt "$1" ]; }
wait_for() { # seconds, command...
  local deadline=$(($(date +%s) + $1)); shift
  until "$@"; do
    [ "$(date +%s)" -lt "$deadline" ] || { echo "timed out waiting for: $*" >&2; exit 1; }
    sleep 0.05
  done
}
running() { curl -sf "http://$control/status" | grep -q '"state":"running"'; }
echo "$(bench_build), $(nproc) cores"
for keys in "${@:-100000 1000000}"; do
  for keys in $keys; do
    rm -rf "$work" && mkdir -p "$work"
    (umask 077 && head -c 24 /dev/urandom | base64 >"$work/token")
    cat >"$work/job.yaml" <<YAML
name: recovery
parallelism: 2
source: {generator: {keys: $keys, eventsPerMs: 200, rate: 200000}}
key: key
window: {tumbling: {size: 1m}}
aggregates: [{name: n, function: count}]
sink: {discard: {}}
checkpoints: {interval: 2s, storage: file://ckpt}
YAML
    peers="127.0.0.1:$(free_port),127.0.0.1:$(free_port)"
    control="127.0.0.1:$(free_port)"
    start_pods() { # extra arguments
      pids=()
      for i in 0 1; do
        local api=off
        [ "$i" = 0 ] && api="$control"
        "$bin" run "$work/job.yaml" --pods 2 --pod-index "$i" --peers "$peers" \
          --control-token-file "$work/token" --control-address "$api" \
          --state-dir "$work/state-$i" "$@" 2>>"$work/pod-$i.log" &
        pids+=($!)
      done
    }
    start_pods
    # Every key in the state: past one key per event at 200,000 a second.
    sleep "$(python3 -c "print(max(4, $keys / 200000 + 2))")"
    wait_for 120 newer_than 1
    kill -9 "${pids[1]}"
    killed=$(now)
    wait "${pids[0]}" || true
    detect=$(since "$killed")
    wait "${pids[1]}" 2>/dev/null || true
    chk=$(newest)
    size=$(du -sh --apparent-size "$work/ckpt" | cut -f1)
    started=$(now)
    start_pods --from-latest-checkpoint
    wait_for 300 running
    restore=$(since "$started")
    wait_for 300 newer_than "$chk"
    resume=$(since "$started")
    kill "${pids[@]}" 2>/dev/null || true
    wait 2>/dev/null || true
    echo "$keys keys: checkpoint $chk, storage $size; detect $detect, restore $restore, next checkpoint $resume"
  done
done
