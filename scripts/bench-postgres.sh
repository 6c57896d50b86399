#!/usr/bin/env bash
# Reproduces the README's PostgreSQL sink figure: starts a throwaway
# PostgreSQL server on 127.0.0.1 (initdb and pg_ctl of Debian's postgresql
# package; as root it runs as the postgres user), writes 100,000 three-field
# records to a file, and runs a select job that inserts them into a table with
# the release binary, three times. Prints each run's time and rows/s.
# Usage: scripts/bench-postgres.sh [records]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
records="${1:-100000}"
bin="$(bench_streamjob)"
pg_bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
work="$(mktemp -d)"
port=55432
as_pg=()
if [ "$(id -u)" -eq 0 ]; then
  chown postgres:postgres "$work"
  as_pg=(runuser -u postgres --)
fi
stop() {
  "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$work/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap stop EXIT
"${as_pg[@]}" "$pg_bin/initdb" -D "$work/data" -U streamjob -A trust --no-sync >/dev/null
"${as_pg[@]}" "$pg_bin/pg_ctl" -D "$work/data" -l "$work/log" \
  -o "-c listen_addresses=127.0.0.1 -p $port -k $work" -w start >/dev/null
job="$work/job"
mkdir -p "$job"
python3 - "$job/in.jsonl" "$records" <<'EOF'
import sys
with open(sys.argv[1], "w") as f:
    for i in range(int(sys.argv[2])):
        f.write('{"event_id": "e%d", "user_name": "user%d", "location": "city%d"}\n' % (i, i % 10, i % 5))
EOF
url="host=127.0.0.1 port=$port user=streamjob dbname=postgres"
cat > "$job/job.yaml" <<EOF
name: bench-postgres
parallelism: 2
source: {file: {path: in.jsonl}}
select: [event_id, user_name, location]
sink: {postgres: {url: "$url", table: events, createTable: true}}
checkpoints: {interval: 1s, storage: file://ckpt}
EOF
echo "$(bench_build), $(nproc) cores, $records records"
for run in 1 2 3; do
  "$pg_bin/psql" -q -h 127.0.0.1 -p "$port" -U streamjob -d postgres \
    -c 'DROP TABLE IF EXISTS events; DROP TABLE IF EXISTS streamjob_commits;'
  rm -rf "$job/ckpt" "$job/.streamjob"
  start=$(date +%s.%N)
  (cd "$job" && "$bin" run job.yaml --control-address off 2>/dev/null)
  end=$(date +%s.%N)
  rows=$("$pg_bin/psql" -qtA -h 127.0.0.1 -p "$port" -U streamjob -d postgres -c 'SELECT count(*) FROM events')
  python3 -c "import sys; s=$end-$start; print(f'run $run: {$rows} rows in {s:.2f} s, {$rows/s:,.0f} rows/s')"
done
