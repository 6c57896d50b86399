#!/usr/bin/env bash
# Streamjob against Apache Flink 2.3, side by side on the same machine and the
# same two workloads, and the ratio of their throughputs. Run by hand, never in
# CI: it installs Flink (PyFlink from PyPI, into a cached venv) and Java 17
# (Debian's package) when they are missing, and takes a while.
#
#   A. json: the JSON-lines file of scripts/bench-json.sh (scripts/gen-visits.py,
#      N records of 85 bytes, 1,000 visits, event times 1 ms apart), a
#      1-minute tumbling COUNT by visit_id with a 1 s watermark delay, results
#      discarded. Streamjob: `run job.yaml` (the YAML of bench-json.sh);
#      records/s over the whole process's wall time. Flink: the same query in
#      SQL (filesystem source, format json, blackhole sink). Parallelism 1 runs
#      pinned to one core (`taskset -c 0`, for Flink the whole Python process
#      and the JVM it starts), parallelism 2 unpinned.
#   B. gen: generated events shaped like `streamjob bench --window tumbling`
#      (10,000 keys, 10 events per ms of event time, in order), a 1-minute
#      tumbling COUNT per key, results discarded. Streamjob: `bench`, its
#      events_per_second. Flink: a datagen `sequence` field, the key and the
#      event time computed from it in SQL, blackhole sink. Not pinned (as
#      scripts/bench.sh).
#
# Flink runs in a local mini-cluster inside the PyFlink process's JVM
# (scripts/flink/bench_job.py). Its figure is records / the job's wall time,
# from execute_sql to .wait() returning, which includes planning the query
# and starting the mini-cluster (5-15 s here); the job's net run time as Flink
# reports it and the time of the whole Python process (and its JVM, until
# both have exited) are shown beside it.
#
# Usage: scripts/bench-vs-flink.sh [json records, default 5000000]
#   EVENTS=N        workload B's events for Streamjob (default 20000000)
#   FLINK_EVENTS=N  workload B's events for Flink (default: EVENTS)
#   RUNS=3          runs of each cell (default 1); prints every run and the median
#   ONLY=json|gen   one workload only
#   CHECK=1         instead of timing, checks that both produce the same
#                   results (json: the same key/window/count rows; gen: the
#                   same number of results and windows) at parallelism 2
#   STREAMJOB_BIN=path  use this binary instead of building the release one
#
# Time on the project's 2-core machine: the Flink install once (about 2 min,
# 350 MB in the venv), then one run of everything at the default sizes about
# 3 minutes, nearly all of it Flink (RUNS=3: about 9); CHECK=1 about 1.5.
# Run it on an otherwise idle machine: a build alongside halves either side.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh

records="${1:-5000000}"
events="${EVENTS:-20000000}"
flink_events="${FLINK_EVENTS:-$events}"
runs="${RUNS:-1}"
only="${ONLY:-}"
bin="$(bench_streamjob)"
flink_version=2.3.0
venv="$HOME/.cache/streamjob-tools/flink-venv"

# Java 17, from Debian.
export JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64
[ -x "$JAVA_HOME/bin/java" ] || apt_install openjdk-17-jre-headless
# Flink, from PyPI (PyFlink ships Flink's jars).
if [ ! -e "$venv/.apache-flink-$flink_version" ]; then
  echo "installing apache-flink==$flink_version into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "apache-flink==$flink_version"
  "$venv/bin/python" -c 'import pyflink' && touch "$venv/.apache-flink-$flink_version"
fi
flink_py="$venv/bin/python"

work=""
[ "$only" = gen ] || work="$(visits_bench "$records")"
logs="$(mktemp -d "${TMPDIR:-/tmp}/bench-vs-flink.XXXXXX")"

now() { date +%s.%N; }
# awk does the floating point.
calc() { awk "BEGIN { print $1 }"; }
rate() { # records/s as e.g. 2.31M or 412k
  awk -v r="$1" 'BEGIN { if (r >= 1e6) printf "%.2fM", r / 1e6; else printf "%.0fk", r / 1e3 }'
}
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
field() { sed -n "s/^$1=//p" "$2" | tail -1; }

# Runs the Flink job; sets job, net and proc (seconds: the job's wall, its
# net run time, the whole process).
flink_run() { # workload parallelism arg sink log
  local pin=() start end
  [ "$1" = json ] && [ "$2" = 1 ] && pin=(taskset -c 0)
  start=$(now)
  # Through a pipe: the JVM that PyFlink starts writes to the same stdout and
  # outlives Python by a second or two while it shuts down, so `cat` ends only
  # when that JVM has gone too (and leaves no core busy for the next run).
  if ! "${pin[@]}" "$flink_py" scripts/flink/bench_job.py "$1" "$2" "$3" "$4" 2>&1 | cat >"$5"; then
    echo "Flink failed ($1, parallelism $2); its output, then the end of Flink's log:" >&2
    tail -40 "$5" >&2
    tail -40 "$venv"/lib/python*/site-packages/pyflink/log/*.log >&2 || true
    exit 1
  fi
  end=$(now)
  job=$(field job_seconds "$5")
  net=$(field net_runtime_seconds "$5")
  proc=$(awk "BEGIN { printf \"%.1f\", $end - $start }")
}

flink_version_line=$("$flink_py" -c 'from pyflink.version import __version__; print(__version__)')
java_version_line=$("$JAVA_HOME/bin/java" -version 2>&1 | head -1)
echo "$(bench_build), $(nproc) cores, $(free -g | awk '/^Mem:/ { print $2 }') GiB," \
  "load average $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews both sides)"
echo "streamjob $bin"
echo "Flink $flink_version_line (PyFlink, local mini-cluster), $java_version_line"
workloads=(json gen)
[ -n "$only" ] && workloads=("$only")

if [ "${CHECK:-}" = 1 ]; then
  for w in "${workloads[@]}"; do
    if [ "$w" = json ]; then
      "$bin" run "$work/job-stdout.yaml" --parallelism 2 --control-address off 2>/dev/null |
        python3 -c 'import json, sys
for line in sys.stdin:
    r = json.loads(line)
    print(r["visit_id"], r["window_start"][:16], r["visits"])' | sort > "$logs/streamjob.rows"
      flink_run json 2 "$work/visits.jsonl" print "$logs/flink.out"
      sed -n 's/^\([0-9]*> \)\{0,1\}+I\[\(.*\), \(.*\), .*, \(.*\)\]$/\2 \3 \4/p' "$logs/flink.out" |
        sort > "$logs/flink.rows"
      n=$records
    else
      sj_results=$("$bin" bench --window tumbling --parallelism 2 --events "$flink_events" 2>/dev/null | sed -n 's/^results=//p')
      flink_run gen 2 "$flink_events" print "$logs/flink.out"
      sed -n 's/^\([0-9]*> \)\{0,1\}+I\[\(.*\), \(.*\), .*, \(.*\)\]$/\2 \3 \4/p' "$logs/flink.out" > "$logs/flink.rows"
      n=$flink_events
    fi
    summary() { awk '{ rows++; sum += $3; w[$2] = 1 } END { printf "%d results, %d windows, counts summing to %d", rows, length(w), sum }' "$1"; }
    echo "$w: Flink $(summary "$logs/flink.rows") ($n records in)"
    if [ "$w" = json ]; then
      echo "$w: Streamjob $(summary "$logs/streamjob.rows")"
      if cmp -s "$logs/streamjob.rows" "$logs/flink.rows"; then
        echo "$w: the same rows (key, window start, count)"
      else
        echo "$w: the rows DIFFER: diff $logs/streamjob.rows $logs/flink.rows"
      fi
    else
      echo "$w: Streamjob $sj_results results"
    fi
  done
  exit 0
fi

declare -A sj fl_job fl_net fl_proc
for w in "${workloads[@]}"; do
  for p in 1 2; do
    cell="$w $p"
    for r in $(seq "$runs"); do
      if [ "$w" = json ]; then
        pin=()
        [ "$p" = 1 ] && pin=(taskset -c 0)
        start=$(now)
        "${pin[@]}" "$bin" run "$work/job.yaml" --parallelism "$p" --control-address off >"$logs/streamjob.out" 2>&1
        end=$(now)
        s=$(awk "BEGIN { printf \"%.3f\", $end - $start }")
        sj_rate=$(calc "$records / $s")
        sj_note="$s s whole process; $(grep finished "$logs/streamjob.out" | sed 's/^streamjob: //')"
        n=$records
        arg="$work/visits.jsonl"
      else
        "$bin" bench --window tumbling --parallelism "$p" --events "$events" >"$logs/streamjob.out" 2>&1
        sj_rate=$(field events_per_second "$logs/streamjob.out")
        sj_note="$(field elapsed_seconds "$logs/streamjob.out") s, $(field results "$logs/streamjob.out") results, $events events"
        n=$flink_events
        arg=$flink_events
      fi
      flink_run "$w" "$p" "$arg" blackhole "$logs/flink.out"
      sj[$cell]+=" $sj_rate"
      fl_job[$cell]+=" $(calc "$n / $job")"
      fl_net[$cell]+=" $(calc "$n / $net")"
      fl_proc[$cell]+=" $proc"
      echo "$w p=$p run $r: Streamjob $(rate "$sj_rate") records/s ($sj_note)"
      echo "$w p=$p run $r: Flink $(rate "$(calc "$n / $job")") records/s (job wall $job s, net run time $net s = $(rate "$(calc "$n / $net")")/s, whole process $proc s, $n records)"
    done
  done
done

echo
echo "records/s$([ "$runs" -gt 1 ] && echo ", median of $runs runs")"
printf '%-8s %2s %11s %11s %7s %11s %7s %9s\n' workload P Streamjob "Flink(job)" ratio "Flink(net)" ratio "Flink-s"
for w in "${workloads[@]}"; do
  for p in 1 2; do
    cell="$w $p"
    # shellcheck disable=SC2086 # the runs are space-separated on purpose
    {
      a=$(median ${sj[$cell]})
      b=$(median ${fl_job[$cell]})
      c=$(median ${fl_net[$cell]})
      d=$(median ${fl_proc[$cell]})
    }
    printf '%-8s %2s %11s %11s %7s %11s %7s %9s\n' "$w" "$p" "$(rate "$a")" "$(rate "$b")" \
      "$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.1fx", a / b }')" "$(rate "$c")" \
      "$(awk -v a="$a" -v c="$c" 'BEGIN { printf "%.1fx", a / c }')" "$(printf '%.1f' "$d")"
    if [ "$runs" -gt 1 ]; then
      # shellcheck disable=SC2086
      echo "           runs: Streamjob$(for x in ${sj[$cell]}; do printf ' %s' "$(rate "$x")"; done);" \
        "Flink job$(for x in ${fl_job[$cell]}; do printf ' %s' "$(rate "$x")"; done);" \
        "Flink net$(for x in ${fl_net[$cell]}; do printf ' %s' "$(rate "$x")"; done)"
    fi
  done
done
echo "json: $records records; gen: $events events for Streamjob, $flink_events for Flink." \
  "Flink(job): records / (execute_sql .. wait()); Flink(net): records / Flink's net job run time;" \
  "Flink-s: seconds of the whole Flink process (Python and its JVM). ratio = Streamjob / Flink."
echo "logs in $logs"
