# Sourced by the scripts: the cargo target directory lives outside the clone,
# so a fresh clone (and CI) reuses the RocksDB build instead of redoing it.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/streamjob-target}"

# A free TCP port on 127.0.0.1 (for the bench scripts' jobs and brokers).
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Installs Debian packages (with sudo unless root), for the bench scripts'
# tools.
apt_install() {
  local sudo=()
  [ "$(id -u)" = 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -q
  "${sudo[@]}" apt-get install -y -q "$@"
}

# The `streamjob` a benchmark runs, its path printed: STREAMJOB_BIN when
# set (another build, e.g. an old commit's; no cargo needed), otherwise the
# release build, made now.
bench_streamjob() {
  if [ -n "${STREAMJOB_BIN:-}" ]; then
    echo "$STREAMJOB_BIN"
  else
    cargo build --release -q -p streamjob-runtime
    echo "$CARGO_TARGET_DIR/release/streamjob"
  fi
}

# Which build bench_streamjob runs, for the first line a benchmark prints.
bench_build() {
  echo "${STREAMJOB_BIN:-commit $(git rev-parse --short HEAD)}"
}

# The JSON benchmarks' input (bench-json.sh, bench-vs-flink.sh): RECORDS
# visit records (scripts/gen-visits.py), written once into a folder kept
# between runs, and beside them the job reading them, a 1-minute tumbling
# COUNT by visit_id: job.yaml into the discard sink, job-stdout.yaml into
# stdout. Prints the folder.
visits_bench() {
  local records="$1" work sink
  work="${TMPDIR:-/tmp}/streamjob-bench-json-v2-$records"
  mkdir -p "$work"
  if [ ! -s "$work/visits.jsonl" ]; then
    python3 scripts/gen-visits.py "$work/visits.jsonl.tmp" "$records"
    mv "$work/visits.jsonl.tmp" "$work/visits.jsonl"
  fi
  for sink in discard stdout; do
    cat >"$work/job$([ "$sink" = discard ] || echo "-$sink").yaml" <<YAML
name: bench-json
source: {file: {path: visits.jsonl}}
eventTime: {field: event_time}
watermark: {outOfOrderness: 1s}
key: visit_id
window: {tumbling: {size: 1m}}
aggregates: [{name: visits, function: count}]
sink: {$sink: {}}
YAML
  done
  echo "$work"
}

# Beside visits_bench's files in WORK, for the scripts that also run
# generated events and pods (bench-pods.sh, bench-scaling.sh):
# generated.yaml, RECORDS generated events (10,000 keys) into a 1-minute
# tumbling COUNT, discard sink; and pods-token, the token their pods share
# (made once, readable by its owner only).
generated_bench() {
  local work="$1" records="$2"
  cat >"$work/generated.yaml" <<YAML
name: bench-generated
source: {generator: {events: $records, keys: 10000, eventsPerMs: 10}}
key: key
window: {tumbling: {size: 1m}}
aggregates: [{name: n, function: count}]
sink: {discard: {}}
YAML
  [ -s "$work/pods-token" ] || (umask 077 && head -c 24 /dev/urandom | base64 >"$work/pods-token")
}

# Prints "LABEL: S s, R records/s" for RECORDS records read from START to
# END (seconds since the epoch, as date +%s.%N prints them).
rate() {
  python3 -c "import sys; s=float(sys.argv[2])-float(sys.argv[1]); print(f'{sys.argv[4]}: {s:.2f} s, {int(sys.argv[3])/s/1e6:.2f}M records/s')" "$@"
}
