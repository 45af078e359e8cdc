#!/usr/bin/env bash
# The audit analytics routes on big stores: for each size, builds a SQLite store of that many
# rows through the writer's insert path (`inferlog audit replay` of a generated spill file:
# requests over the last 24 hours, batches, rejections, outliers), starts the server on it,
# and times each route (median of 5 requests, curl's total time).
#
#   bench/rollups.sh                     # 1,000,000 and 10,000,000 rows
#   SIZES="100000 1000000" bench/rollups.sh
#
# Needs python3 and curl. The 10M store takes about 3 GB of disk, its spill file as much.
# Prints a Markdown table (paste it into BENCHMARKS.md).
set -euo pipefail
cd "$(dirname "$0")/.."

SIZES=${SIZES:-"1000000 10000000"}
PORT=${PORT:-18183}
cargo build --release --quiet --bin inferlog
BIN=target/release/inferlog
WORK=$(mktemp -d)
trap 'kill "${SERVER:-0}" 2>/dev/null || true; rm -rf "$WORK"' EXIT

generate() { # rows file
  python3 - "$1" "$2" <<'PY'
import json, random, sys, datetime
rows, path = int(sys.argv[1]), sys.argv[2]
random.seed(7)
now = datetime.datetime.now(datetime.timezone.utc)
labels = ["setosa", "versicolor", "virginica"]
n = req = 0
with open(path, "w") as f:
    while n < rows:
        at = (now - datetime.timedelta(seconds=random.random() * 86400)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        rejected = random.random() < 0.05
        size = 1 if rejected else random.choice([1, 1, 1, 10])
        latency = int(random.lognormvariate(6, 1))
        for item in range(min(size, rows - n)):
            c = random.randrange(3)
            f.write(json.dumps({
                "request_id": f"bench-{req}", "item": item, "received_at": at,
                "model": "iris", "model_version": "003652d457e1a873",
                "features": None if rejected else [round(random.gauss(5.8, 0.8), 1), 3.0, round(random.gauss(3.7, 1.7), 1), 1.2],
                "prediction": None if rejected else c, "label": None if rejected else labels[c],
                "status": 422 if rejected else 200, "error_code": "invalid_feature" if rejected else None,
                "latency_us": latency, "client_addr": "10.0.0.1", "raw_body": "{}" if rejected else None,
                "outliers": ["petal_width"] if not rejected and random.random() < 0.02 else None,
                "client_request_id": None,
            }) + "\n")
            n += 1
        req += 1
PY
}

median_ms() { # path
  local times=()
  for _ in 1 2 3 4 5; do
    times+=("$(curl -s -o /dev/null -w '%{time_total}' "http://127.0.0.1:$PORT$1")")
  done
  printf '%s\n' "${times[@]}" | sort -n | sed -n 3p | awk '{printf "%.1f", $1 * 1000}'
}

SINCE=$(date -u -d '24 hours ago' +%Y-%m-%dT%H:%M:00Z)
printf '| rows | build (s) | /audit/summary | /audit/timeseries 24 h by minute | /audit/summary?label=setosa (rows) | /monitor/drift | /monitor/performance |\n'
printf '|---:|---:|---:|---:|---:|---:|---:|\n'
for rows in $SIZES; do
  db="$WORK/audit-$rows.db"
  generate "$rows" "$WORK/spill.jsonl"
  start=$(date +%s.%N)
  "$BIN" audit replay "$WORK/spill.jsonl" --database-url "sqlite://$db" >/dev/null
  built=$(echo "$(date +%s.%N) - $start" | bc)
  rm -f "$WORK/spill.jsonl"
  "$BIN" serve --bind "127.0.0.1:$PORT" --models models --database-url "sqlite://$db" \
    --log-file "$WORK/server.log" &
  SERVER=$!
  until curl -sf "http://127.0.0.1:$PORT/health/ready" >/dev/null; do sleep 0.2; done
  # The replay's rollup deltas are merged within a second or two of the start.
  sleep 3
  printf '| %s | %.0f | %s ms | %s ms | %s ms | %s ms | %s ms |\n' "$rows" "$built" \
    "$(median_ms /audit/summary)" \
    "$(median_ms "/audit/timeseries?bucket=1m&since=$SINCE")" \
    "$(median_ms '/audit/summary?label=setosa')" \
    "$(median_ms /monitor/drift)" \
    "$(median_ms /monitor/performance)"
  kill -TERM "$SERVER"
  wait "$SERVER" || true
  rm -f "$db"*
done
echo
echo "$(nproc) cores, $(date -u +%Y-%m-%d)"
