"""Writes the JSON-lines input of scripts/bench-json.sh and
scripts/bench-vs-flink.sh: N records of 85 bytes each,
{"event_id","visit_id","event_time","page"}, 1,000 visits, event times 1 ms
apart from 2026-01-01T00:00:00Z. Usage: python3 scripts/gen-visits.py PATH N
"""
import sys

path, n = sys.argv[1], int(sys.argv[2])
start = 1_767_225_600_000
with open(path, "w") as f:
    for i in range(n):
        f.write('{"event_id":%d,"visit_id":"v%05d","event_time":%d,"page":"/p/%03d"}\n'
                % (10_000_000 + i, (i * 7919) % 1_000, start + i, i % 1000))
