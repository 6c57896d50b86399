"""The Flink side of scripts/bench-vs-flink.sh: one PyFlink Table API job in
streaming mode, pure SQL (no Python UDF, so no Python worker runs), in a local
mini-cluster inside this process's JVM.

  python bench_job.py json PARALLELISM PATH [blackhole|print]
  python bench_job.py gen  PARALLELISM EVENTS [blackhole|print]

json: the JSON-lines file of scripts/gen-visits.py, event time from
event_time (BIGINT ms), watermark 1 s, 1-minute tumbling COUNT(*) by
visit_id, like scripts/bench-json.sh's job.

gen: datagen events shaped like `streamjob bench --window tumbling`
(runtime/src/bin/streamjob/bench.rs): 10,000 integer keys, 10 events per
millisecond of event time from 2025-01-01T00:00:00Z, in order (watermark = the
event time), 1-minute tumbling COUNT(*) by key.

The sink is `blackhole`; `print` prints each result to stdout instead (as
`+I[key, window_start, window_end, count]`, prefixed by the subtask at
parallelism 2), for checking the results against Streamjob's.
Prints `job_seconds=` (execute_sql until .wait() returns: plan, submit, run),
`net_runtime_seconds=` (the job's net run time as Flink reports it)
and `setup_seconds=` (JVM start and table environment), one per line.
"""
import sys
import time

t_start = time.monotonic()

from pyflink.table import EnvironmentSettings, TableEnvironment  # noqa: E402

workload, parallelism, arg = sys.argv[1], int(sys.argv[2]), sys.argv[3]
mode = sys.argv[4] if len(sys.argv) > 4 else "blackhole"

settings = EnvironmentSettings.in_streaming_mode()
t_env = TableEnvironment.create(settings)
conf = t_env.get_config()
conf.set("parallelism.default", str(parallelism))
conf.set("table.local-time-zone", "UTC")
# Flink's default checkpointing is off, as in the Streamjob runs.

if workload == "json":
    t_env.execute_sql(f"""
        CREATE TABLE visits (
          event_id BIGINT,
          visit_id STRING,
          event_time BIGINT,
          page STRING,
          ts AS TO_TIMESTAMP_LTZ(event_time, 3),
          WATERMARK FOR ts AS ts - INTERVAL '1' SECOND
        ) WITH (
          'connector' = 'filesystem',
          'path' = 'file://{arg}',
          'format' = 'json'
        )""")
    key = "visit_id"
    key_type = "STRING"
    source = "visits"
elif workload == "gen":
    events = int(arg)
    # bench.rs: key = a hash of the event's index mapped onto 0..10,000
    # (uniform); event time = start + index / 10 ms. SQL has no SplitMix, so
    # the key is the index times a prime modulo 10,000: uniform too (each
    # 10,000 consecutive events hold every key once), the same 10,000 keys
    # and the same number of windows and results.
    t_env.execute_sql(f"""
        CREATE TABLE events (
          seq BIGINT,
          k AS MOD(seq * 7919, 10000),
          ts AS TO_TIMESTAMP_LTZ(1735689600000 + (seq - MOD(seq, 10)) / 10, 3),
          WATERMARK FOR ts AS ts
        ) WITH (
          'connector' = 'datagen',
          'fields.seq.kind' = 'sequence',
          'fields.seq.start' = '0',
          'fields.seq.end' = '{events - 1}',
          'rows-per-second' = '1000000000'
        )""")
    key = "k"
    key_type = "BIGINT"
    source = "events"
else:
    sys.exit(f"unknown workload {workload}")

query = f"""
    SELECT {key}, window_start, window_end, COUNT(*) AS cnt
    FROM TABLE(TUMBLE(TABLE {source}, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
    GROUP BY {key}, window_start, window_end"""

t_setup = time.monotonic()
print(f"setup_seconds={t_setup - t_start:.3f}", flush=True)

if mode in ("blackhole", "print"):
    t_env.execute_sql(f"""
        CREATE TABLE sink (
          k {key_type}, window_start TIMESTAMP(3), window_end TIMESTAMP(3),
          cnt BIGINT
        ) WITH ('connector' = '{mode}')""")
    t0 = time.monotonic()
    result = t_env.execute_sql(f"INSERT INTO sink {query}")
    result.wait()
    t1 = time.monotonic()
    print(f"job_seconds={t1 - t0:.3f}", flush=True)
    # The job's own run time as Flink counts it (from the job's start to its
    # end, without the planning and the mini-cluster's start).
    net = result.get_job_client().get_job_execution_result().result()
    print(f"net_runtime_seconds={net.get_net_runtime() / 1000:.3f}", flush=True)
else:
    sys.exit(f"unknown mode {mode}")
