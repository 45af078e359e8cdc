#!/usr/bin/env bash
# The audit analytics routes on big stores: for each size, builds a SQLite store of that many
# rows through the writer's insert path (`inferlog audit replay` of a generated spill file:
# requests over the last 24 hours, batches, rejections, outliers), starts the server on it,
# sends feedback on 20,000 answered rows over HTTP (a sixth of them replacing an earlier one),
# and times each route (median of 5 requests, curl's total time).
#
#   bench/rollups.sh                     # SQLite: 1,000,000 and 10,000,000 rows
#   SIZES="100000 1000000" bench/rollups.sh
#   PG_SIZES="1000000" (the default)     # PostgreSQL, on a throwaway local server
#   SKIP_PG=1                            # no PostgreSQL
#   LOAD=0                               # no load table (default: on the first SQLite size)
#
# The load table: on the first SQLite store, durable single-row /predict from loadgen
# (32 connections, 20 s) alone, then with two clients looping over the three analytics
# routes with a bound inside a minute, then the same with INFERLOG_AUDIT_MAX_MB set so that the
# database's share of it (three quarters; the WAL has the rest) is 256 MiB above the store's
# size; the WAL is sampled every 0.2 s.
#
# Needs python3, curl and sqlite3. The 10M store takes about 3 GB of disk, its spill file as much.
# Prints a Markdown table (paste it into BENCHMARKS.md).
set -euo pipefail
cd "$(dirname "$0")/.."

SIZES=${SIZES:-"1000000 10000000"}
PORT=${PORT:-18183}
cargo build --release --quiet --bin inferlog --example loadgen
BIN=target/release/inferlog
LOADGEN=target/release/examples/loadgen
LOAD=${LOAD:-1}
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
                "model": "iris", "model_version": "8b6c2b6dfd0a44a8",
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

feedback() { # rows: 20,000 feedbacks on answered rows of the store, over one connection
  python3 - "$1" "$PORT" <<'PY'
import http.client, json, random, sys
rows, port = int(sys.argv[1]), int(sys.argv[2])
random.seed(11)
conn = http.client.HTTPConnection("127.0.0.1", port)
sent = 0
while sent < 20000:
    req = random.randrange(rows // 2)
    body = json.dumps({"request_id": f"bench-{req}", "item": 0,
                       "label": random.choice(["setosa", "versicolor", "virginica"])})
    for _ in range(2 if random.random() < 1 / 6 else 1):
        conn.request("POST", "/feedback", body, {"Content-Type": "application/json"})
        res = conn.getresponse()
        res.read()
        # A rejected request has no answered row: 404, and another is picked.
        if res.status == 201:
            sent += 1
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
# A bound inside a minute: whole minutes from the rollups, the edge minute from its rows.
SINCE_INSIDE=$(date -u -d '24 hours ago' +%Y-%m-%dT%H:%M:30Z)

measure() { # store rows url pending-deltas-function: builds, serves, times; one table row
  local store=$1 rows=$2 url=$3 pending=$4
  generate "$rows" "$WORK/spill.jsonl"
  local start built
  start=$(date +%s.%N)
  "$BIN" audit replay "$WORK/spill.jsonl" --database-url "$url" >/dev/null
  built=$(echo "$(date +%s.%N) - $start" | bc)
  # A PostgreSQL store just filled in bulk has no planner statistics: without them drift's read
  # of the newest rows is a sequential scan and sort, 385 ms instead of 8 at 1M rows.
  if [ "$store" = PostgreSQL ]; then "$PG_BIN/psql" -h "$PGDIR" -U postgres -d "r$rows" -qc analyze; fi
  rm -f "$WORK/spill.jsonl"
  "$BIN" serve --bind "127.0.0.1:$PORT" --models models --database-url "$url" \
    --log-file "$WORK/server.log" &
  SERVER=$!
  until curl -sf "http://127.0.0.1:$PORT/health/ready" >/dev/null; do sleep 0.2; done
  feedback "$rows"
  # The replay's and the feedback's rollup deltas are merged every second.
  until [ "$($pending)" = 0 ]; do sleep 0.5; done
  printf '| %s | %s | %.0f | %s ms | %s ms | %s ms | %s ms | %s ms | %s ms | %s ms | %s ms |\n' "$store" "$rows" "$built" \
    "$(median_ms /audit/summary)" \
    "$(median_ms "/audit/summary?since=$SINCE_INSIDE")" \
    "$(median_ms "/audit/timeseries?bucket=1m&since=$SINCE")" \
    "$(median_ms '/audit/summary?label=setosa')" \
    "$(median_ms /monitor/drift)" \
    "$(median_ms "/monitor/drift?since=$SINCE_INSIDE")" \
    "$(median_ms /monitor/performance)" \
    "$(median_ms "/monitor/performance?since=$SINCE_INSIDE")"
  if [ "$store" = SQLite ] && [ "$LOAD" = 1 ] && [ -z "${LOADED:-}" ]; then
    LOADED=1
    under_load "no analytics" 0 >>"$WORK/load.md"
    under_load "2 analytics clients" 1 >>"$WORK/load.md"
    kill -TERM "$SERVER"
    wait "$SERVER" || true
    local cap=$(( ( ($(stat -c %s "$db") >> 20) + 256 ) * 4 / 3 ))
    "$BIN" serve --bind "127.0.0.1:$PORT" --models models --database-url "$url" \
      --log-file "$WORK/server.log" --audit-max-mb "$cap" &
    SERVER=$!
    until curl -sf "http://127.0.0.1:$PORT/health/ready" >/dev/null; do sleep 0.2; done
    under_load "2 analytics clients, cap $cap MiB" 1 >>"$WORK/load.md"
  fi
  kill -TERM "$SERVER"
  wait "$SERVER" || true
}

# One row of the load table: durable /predict for 20 s, with `readers` analytics clients
# looping over the routes with a bound inside a minute (counted: answers, and 503s among them).
under_load() { # label readers
  local label=$1 readers=$2 peak=0 files=0 pids=() w t
  : >"$WORK/reads"
  if [ "$readers" = 1 ]; then
    for _ in 1 2; do
      (
        while :; do
          for p in "/audit/summary?since=$SINCE_INSIDE" "/monitor/drift?since=$SINCE_INSIDE" \
            "/monitor/performance?since=$SINCE_INSIDE"; do
            curl -s -o /dev/null -w '%{http_code}\n' "http://127.0.0.1:$PORT$p" >>"$WORK/reads"
          done
        done
      ) &
      pids+=($!)
    done
  fi
  "$LOADGEN" --addr "127.0.0.1:$PORT" --method POST --path /predict \
    --body '{"features": [5.1, 3.5, 1.4, 0.2]}' --connections 32 --duration 20 >"$WORK/load.json" &
  local lg=$!
  while kill -0 "$lg" 2>/dev/null; do
    w=$(stat -c %s "$db-wal" 2>/dev/null || echo 0)
    t=$(( w + $(stat -c %s "$db") ))
    [ "$w" -gt "$peak" ] && peak=$w
    [ "$t" -gt "$files" ] && files=$t
    sleep 0.2
  done
  wait "$lg"
  [ ${#pids[@]} -gt 0 ] && { kill "${pids[@]}" 2>/dev/null || true; wait "${pids[@]}" 2>/dev/null || true; }
  python3 - "$WORK/load.json" "$WORK/reads" "$label" "$peak" "$files" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
reads = open(sys.argv[2]).read().split()
label, peak, files = sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
print(f"| {label} | {r['rps']:,.0f} | {r['p99_us'] / 1000:.1f} ms | {r['non_2xx']:,} of {r['requests']:,} "
      f"| {len(reads):,} ({reads.count('503')} 503) | {peak / 2**20:.1f} MiB | {files / 2**20:.0f} MiB |")
PY
}

printf '| store | rows | build (s) | /audit/summary | /audit/summary?since= inside a minute | /audit/timeseries 24 h by minute | /audit/summary?label=setosa (rows) | /monitor/drift | /monitor/drift?since= inside a minute | /monitor/performance | /monitor/performance?since= inside a minute |\n'
printf '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n'
command -v sqlite3 >/dev/null || { echo "sqlite3 is needed (apt-get install sqlite3)"; exit 1; }
sqlite_pending() { sqlite3 "$db" 'select count(*) from rollup_delta'; }
for rows in $SIZES; do
  db="$WORK/audit-$rows.db"
  measure SQLite "$rows" "sqlite://$db" sqlite_pending
  rm -f "$db"*
done

# PostgreSQL: a throwaway local server (default settings), PG_SIZES rows (SKIP_PG=1: none).
PG_SIZES=${PG_SIZES:-"1000000"}
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
if [ -n "$PG_BIN" ] && [ -x "$PG_BIN/initdb" ] && [ "${SKIP_PG:-0}" != 1 ] && [ -n "$PG_SIZES" ]; then
  PGDIR=$(mktemp -d)
  as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
  [ "$(id -u)" = 0 ] && chown postgres "$PGDIR"
  as_pg "$PG_BIN/initdb" -D "$PGDIR/data" -A trust -U postgres -E UTF8 >/dev/null
  as_pg "$PG_BIN/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/log" -w start \
    -o "-c listen_addresses= -c unix_socket_directories=$PGDIR" >/dev/null
  trap 'kill "${SERVER:-0}" 2>/dev/null || true; as_pg "$PG_BIN/pg_ctl" -D "$PGDIR/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$WORK" "$PGDIR"' EXIT
  pg_pending() { "$PG_BIN/psql" -h "$PGDIR" -U postgres -d "r$rows" -Atc 'select count(*) from rollup_delta'; }
  for rows in $PG_SIZES; do
    "$PG_BIN/psql" -h "$PGDIR" -U postgres -qc "create database r$rows"
    measure PostgreSQL "$rows" "postgres://postgres@localhost/r$rows?host=$PGDIR" pg_pending
    "$PG_BIN/psql" -h "$PGDIR" -U postgres -qc "drop database r$rows"
  done
fi
if [ -s "$WORK/load.md" ]; then
  echo
  echo "| durable /predict, 32 connections, 20 s | req/s | p99 | non-2xx | analytics answers | peak WAL | database + WAL |"
  echo "|---|---:|---:|---:|---:|---:|---:|"
  cat "$WORK/load.md"
fi
echo
echo "$(nproc) cores, $(date -u +%Y-%m-%d)"
