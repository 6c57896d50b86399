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

# Builds the release `streamjob` and prints its path (for the bench scripts).
release_streamjob() {
  cargo build --release -q -p streamjob-runtime
  echo "$CARGO_TARGET_DIR/release/streamjob"
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
