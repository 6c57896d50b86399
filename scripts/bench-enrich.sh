#!/usr/bin/env bash
# Reproduces the README's enrichment figure: writes 1,000,000 orders, a
# users changelog of 100,000 records and an items changelog of 1,000 to
# files, and runs the two-lookup select job of examples/order-enrichment.yaml
# on them (discard sink) with the release binary, three times at
# parallelism 1 and at 2; then, as the baseline, the same orders selected
# without lookups; last, the job on 2 orders, which times the changelogs'
# catch-up alone. Prints each run's summary line (records in, time).
# Usage: scripts/bench-enrich.sh [orders]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
orders="${1:-1000000}"
bin="$(bench_streamjob)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 - "$work" "$orders" <<'EOF'
import sys
work, orders = sys.argv[1], int(sys.argv[2])
with open(f"{work}/users.jsonl", "w") as f:
    for u in range(100_000):
        f.write('{"id": %d, "first_name": "First%d", "last_name": "Last%d", "email": "user%d@example.com"}\n' % (u, u, u, u))
with open(f"{work}/items.jsonl", "w") as f:
    for i in range(1_000):
        f.write('{"id": %d, "name": "item %d", "category": "c%d", "price": %d.5}\n' % (i, i, i % 20, i % 90))
for part in range(2):
    with open(f"{work}/orders-{part}.jsonl", "w") as f:
        for o in range(part, orders, 2):
            f.write('{"invoice_id": %d, "line_item_id": %d, "user_id": %d, "item_id": %d, "quantity": %d}\n'
                    % (o // 3, o, (o * 7919) % 100_000, (o * 104729) % 1_000, 1 + o % 4))
EOF
cat > "$work/job.yaml" <<EOF
name: bench-enrich
source: {file: {paths: [orders-0.jsonl, orders-1.jsonl]}}
enrich:
  - {name: user, from: {file: {path: users.jsonl}}, key: id, on: user_id, fields: [first_name, last_name, email]}
  - {name: item, from: {file: {path: items.jsonl}}, key: id, on: item_id, fields: [name, category, price]}
select: [invoice_id, line_item_id, user.email, item.name, item.price, quantity]
sink: {discard: {}}
EOF
cat > "$work/baseline.yaml" <<EOF
name: bench-select
source: {file: {paths: [orders-0.jsonl, orders-1.jsonl]}}
select: [invoice_id, line_item_id, user_id, item_id, quantity]
sink: {discard: {}}
EOF
head -2 "$work/orders-0.jsonl" > "$work/few.jsonl"
sed 's/paths: \[orders-0.jsonl, orders-1.jsonl\]/paths: [few.jsonl]/' "$work/job.yaml" > "$work/catch-up.yaml"
for job in job baseline catch-up; do
  for p in 1 2; do
    for run in 1 2 3; do
      "$bin" run "$work/$job.yaml" --parallelism "$p" --control-address off 2>&1 | grep finished | sed "s/^/parallelism $p: /"
    done
  done
done
