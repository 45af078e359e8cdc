#!/usr/bin/env bash
# Load benchmark of inferlog: builds the release binary and the load generator, then for each
# variant starts the server on a fresh database with logs going to a file, loads it over
# loopback, stops it with SIGTERM and checks that the audit rows equal the rows acknowledged.
#
#   bench/run.sh                   # all variants, 10 s each, 64 connections
#   DURATION=30 CONNECTIONS=64 bench/run.sh
#
# With PostgreSQL installed (Debian's postgresql), it also starts a throwaway local server and
# measures the PostgreSQL backend (SKIP_PG=1 leaves it out).
#
# Prints a Markdown table (paste it into BENCHMARKS.md). Client and server share the machine's
# cores, as the figures in BENCHMARKS.md do.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-64}
CLIENT_THREADS=${CLIENT_THREADS:-1}
PORT=${PORT:-18181}

cargo build --release --quiet --bin inferlog --example loadgen
BIN=target/release/inferlog
LOADGEN=target/release/examples/loadgen
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

SINGLE='{"features": [5.8, 2.7, 5.1, 1.9]}'
BATCH=$(python3 - <<'PY' 2>/dev/null || awk 'BEGIN{printf "{\"features\": ["; for(i=0;i<100;i++){printf "%s[%.1f, 3.0, %.1f, 1.3]", (i?", ":""), 4.5+(i%30)*0.1, 1.0+(i%50)*0.1}; print "]}"}'
rows = ", ".join(f"[{4.5 + (i % 30) * 0.1:.1f}, 3.0, {1.0 + (i % 50) * 0.1:.1f}, 1.3]" for i in range(100))
print('{"features": [' + rows + ']}')
PY
)

json_field() { sed -E "s/.*\"$2\":([0-9.]+).*/\1/" <<<"$1"; }

db_url() { # name: the SQLite file of a variant, or its PostgreSQL database (pg-*)
  case "$1" in
    pg-*) echo "postgres://postgres@localhost/${1//-/_}?host=$PGDIR" ;;
    *) echo "sqlite://$WORK/$1.db" ;;
  esac
}

start_server() { # name mode [extra serve arguments]
  rm -f "$WORK/$1.db"* "$WORK/$1.log"
  # Each variant starts with no dirty pages of the one before still being written back:
  # otherwise a batch variant's gigabyte of SQLite pages is flushed during the next variant
  # and slows its commits (PostgreSQL's WAL fsyncs above all).
  sync
  case "$1" in pg-*) "$PG_BIN/psql" -h "$PGDIR" -U postgres -qc "create database ${1//-/_}" ;; esac
  "$BIN" serve --bind "127.0.0.1:$PORT" --models models \
    --database-url "$(db_url "$1")" --log-file "$WORK/$1.log" \
    --audit-mode "$2" --audit-queue-timeout-ms 5000 "${@:3}" &
  SERVER=$!
  "$LOADGEN" --addr "127.0.0.1:$PORT" --wait-ready 30
}

stop_server() {
  PEAK_RSS_KB=$(awk '/VmHWM/ {print $2}' "/proc/$SERVER/status")
  kill -TERM "$SERVER"
  wait "$SERVER"
}

audited_rows() { # name
  "$BIN" audit --database-url "$(db_url "$1")" --status ok --summary \
    | awk -F': ' '/"rows"/ {gsub(/,/, "", $2); print $2; exit}'
}

printf '| variant | requests/s | rows/s | p50 ms | p99 ms | max ms | non-2xx | errors | peak RSS MB | audited rows = acknowledged |\n'
printf '|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n'

row() { # label result rows_per_request audited
  local r=$2 per=$3 audited=$4
  local ok rps p50 p99 max non errs
  ok=$(json_field "$r" ok); rps=$(json_field "$r" rps)
  p50=$(json_field "$r" p50_us); p99=$(json_field "$r" p99_us); max=$(json_field "$r" max_us)
  non=$(json_field "$r" non_2xx); errs=$(json_field "$r" errors)
  local check="n/a"
  if [ "$audited" != "-" ]; then
    if [ "$audited" -eq $((ok * per)) ]; then check="yes ($audited)"; else check="**NO: $audited vs $((ok * per))**"; fi
  fi
  awk -v l="$1" -v rps="$rps" -v per="$per" -v p50="$p50" -v p99="$p99" -v max="$max" \
      -v non="$non" -v errs="$errs" -v rss="$PEAK_RSS_KB" -v check="$check" \
    'BEGIN { printf "| %s | %.0f | %.0f | %.2f | %.2f | %.1f | %d | %d | %.0f | %s |\n",
             l, rps, rps * per, p50 / 1000, p99 / 1000, max / 1000, non, errs, rss / 1024, check }'
}

load() { # method path body
  "$LOADGEN" --addr "127.0.0.1:$PORT" --connections "$CONNECTIONS" --duration "$DURATION" \
    --threads "$CLIENT_THREADS" --method "$1" --path "$2" --body "$3"
}

# 1. durable single-row /predict, and /health/live on the same server as the HTTP ceiling
start_server durable durable
DURABLE=$(load POST /predict "$SINGLE")
HEALTH=$(load GET /health/live "")
stop_server
row "GET /health/live (ceiling)" "$HEALTH" 0 "-"
row "POST /predict, 1 row, durable" "$DURABLE" 1 "$(audited_rows durable)"

# 2. async single-row /predict
start_server async async
ASYNC=$(load POST /predict "$SINGLE")
stop_server
row "POST /predict, 1 row, async" "$ASYNC" 1 "$(audited_rows async)"

# 3. batches of 100 rows, durable
start_server batch durable
BATCHED=$(load POST /predict "$BATCH")
stop_server
row "POST /predict, 100 rows, durable" "$BATCHED" 100 "$(audited_rows batch)"

# 4. batches of 100 rows, async: the rate behind the README's bound on what SIGKILL loses
start_server abatch async
ABATCHED=$(load POST /predict "$BATCH")
stop_server
row "POST /predict, 100 rows, async" "$ABATCHED" 100 "$(audited_rows abatch)"

# 5. PostgreSQL (a local server on a unix socket, default settings: fsync and synchronous
#    commit on), durable: single rows and batches of 100. Skipped without PostgreSQL.
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
if [ -n "$PG_BIN" ] && [ -x "$PG_BIN/initdb" ] && [ "${SKIP_PG:-0}" != 1 ]; then
  # Its own folder: the postgres user cannot enter $WORK.
  PGDIR=$(mktemp -d)
  as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
  [ "$(id -u)" = 0 ] && chown postgres "$PGDIR"
  as_pg "$PG_BIN/initdb" -D "$PGDIR/data" -A trust -U postgres -E UTF8 >/dev/null
  as_pg "$PG_BIN/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/log" -w start \
    -o "-c listen_addresses= -c unix_socket_directories=$PGDIR" >/dev/null
  trap 'as_pg "$PG_BIN/pg_ctl" -D "$PGDIR/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$WORK" "$PGDIR"' EXIT

  start_server pg-durable durable
  PG_DURABLE=$(load POST /predict "$SINGLE")
  stop_server
  row "PostgreSQL: POST /predict, 1 row, durable" "$PG_DURABLE" 1 "$(audited_rows pg-durable)"

  start_server pg-batch durable
  PG_BATCHED=$(load POST /predict "$BATCH")
  stop_server
  row "PostgreSQL: POST /predict, 100 rows, durable" "$PG_BATCHED" 100 "$(audited_rows pg-batch)"

  # One writer instead of the default two (INFERLOG_PG_WRITERS), the server sharing the cores.
  start_server pg-batch1 durable --pg-writers 1
  PG_BATCHED1=$(load POST /predict "$BATCH")
  stop_server
  row "PostgreSQL: POST /predict, 100 rows, durable, 1 writer" "$PG_BATCHED1" 100 "$(audited_rows pg-batch1)"
fi

echo
echo "duration ${DURATION}s, ${CONNECTIONS} connections, client threads ${CLIENT_THREADS}, $(nproc) cores, $(date -u +%Y-%m-%d)"
