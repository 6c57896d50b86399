#!/usr/bin/env bash
# Where a worker's time goes on the JSON record path: runs bench-json.sh's
# job (N visit records, 1-minute tumbling COUNT by visit_id, discard sink)
# with the release binary at parallelism 1 (pinned to one core) and 2, reads
# the control API's /status every 200 ms, and prints each worker's shares of
# its last full second: busy by stage (read, decode, route, window), idle,
# blocked (on other workers parsing what it read, the exchange, the sink).
# Run by hand, like the other benchmarks. STREAMJOB_BIN=/path/to/an/old/binary
# runs another build.
# Usage: scripts/bench-stages.sh [records, default 5000000]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
records="${1:-5000000}"
bin="$(bench_streamjob)"
work="$(visits_bench "$records")"
port=$(free_port)
echo "$(bench_build), $(nproc) cores, $records records"
for p in 1 2; do
  pin=()
  [ "$p" = 1 ] && pin=(taskset -c 0)
  "${pin[@]}" "$bin" run "$work/job.yaml" --parallelism "$p" --control-address "127.0.0.1:$port" >/dev/null 2>&1 &
  job=$!
  python3 - "$port" "$p" "$job" <<'PY'
import json, sys, time, urllib.request
port, p, job = sys.argv[1], sys.argv[2], int(sys.argv[3])
seen = {}

def alive(pid):
    # A job that ended stays a zombie until the script waits for it.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False

while True:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=1) as r:
            status = json.load(r)
    except OSError:
        if seen or not alive(job):
            break
        time.sleep(0.05)
        continue
    # A worker's last second is the one before it finished (its final
    # publish covers a part second): keep the last full one.
    for w in status.get("workers", []):
        if status["state"] == "running":
            seen[w["index"]] = w
    time.sleep(0.2)
if not seen:
    print(f"parallelism {p}: the job ended before its workers reported a full second; give it more records")
for i, w in sorted(seen.items()):
    t, s = w["time"], w["stages"]
    pct = lambda x: f"{100 * x:4.0f}%"
    print(f"parallelism {p}, worker {i}: busy {pct(t['busy'])} (read {pct(s['read'])}, decode {pct(s['decode'])}, "
          f"route {pct(s['route'])}, window {pct(s['window'])}), idle {pct(t['idle'])}, "
          f"blocked on parsing by other workers {pct(t['blockedOnDecode'])}, on the exchange {pct(t['blockedOnExchange'])}, "
          f"on the sink {pct(t['blockedOnSink'])}")
PY
  wait "$job"
done
