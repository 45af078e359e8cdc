#!/usr/bin/env bash
# The audit writer's throughput, old binary against new, in alternating runs: what the rollups
# (counted in every commit) cost the writer. Per run and binary, on a fresh store each time:
# SQLite durable single-row /predict (requests/s: one commit per request or group), SQLite
# async batches of 100 rows (rows/s: the writer's batch path at full speed), and with
# PostgreSQL installed the same batches durable on a throwaway local server (SKIP_PG=1 leaves
# it out). Ends with the mean of each column per binary and new / old.
#
#   bench/writer.sh OLD_BINARY NEW_BINARY [ROUNDS]
#
# Build each binary with `cargo build --release` at the commit to compare and copy it aside.
# The load generator is built from this checkout. DURATION (s, default 10) per measurement.
set -euo pipefail
cd "$(dirname "$0")/.."
OLD=$1 NEW=$2 ROUNDS=${3:-3}
DURATION=${DURATION:-10}
PORT=${PORT:-18184}
cargo build --release --quiet --example loadgen
LOADGEN=target/release/examples/loadgen
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
SINGLE='{"features": [5.8, 2.7, 5.1, 1.9]}'
BATCH='{"features": ['$(for i in $(seq 0 99); do
  printf '%s[%s, 3.0, %s, 1.3]' "$([ "$i" -gt 0 ] && echo ', ')" \
    "$(awk -v i="$i" 'BEGIN{printf "%.1f", 4.5 + (i % 30) * 0.1}')" \
    "$(awk -v i="$i" 'BEGIN{printf "%.1f", 1.0 + (i % 50) * 0.1}')"
done)']}'

PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
PGDIR=
if [ -n "$PG_BIN" ] && [ -x "$PG_BIN/initdb" ] && [ "${SKIP_PG:-0}" != 1 ]; then
  PGDIR=$(mktemp -d)
  as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
  [ "$(id -u)" = 0 ] && chown postgres "$PGDIR"
  as_pg "$PG_BIN/initdb" -D "$PGDIR/data" -A trust -U postgres -E UTF8 >/dev/null
  as_pg "$PG_BIN/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/log" -w start \
    -o "-c listen_addresses= -c unix_socket_directories=$PGDIR" >/dev/null
  trap 'as_pg "$PG_BIN/pg_ctl" -D "$PGDIR/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$WORK" "$PGDIR"' EXIT
fi

N=0
measure() { # binary url mode body rows_per_request -> rows/s
  local bin=$1 url=$2
  sync
  "$bin" serve --bind "127.0.0.1:$PORT" --models models --database-url "$url" \
    --log-file "$WORK/server.log" --audit-mode "$3" --audit-queue-timeout-ms 5000 &
  local server=$!
  "$LOADGEN" --addr "127.0.0.1:$PORT" --wait-ready 30
  local rps
  rps=$("$LOADGEN" --addr "127.0.0.1:$PORT" --connections 64 --duration "$DURATION" \
    --method POST --path /predict --body "$4" | sed -E 's/.*"rps":([0-9.]+).*/\1/')
  kill -TERM "$server"
  wait "$server" || true
  awk -v r="$rps" -v n="$5" 'BEGIN { printf "%.0f", r * n }'
}

printf '| run | binary | SQLite durable 1 row (req/s) | SQLite async 100 rows (rows/s) | PostgreSQL durable 100 rows (rows/s) |\n'
printf '|---|---|---:|---:|---:|\n'
for round in $(seq 1 "$ROUNDS"); do
  for which in old new; do
    bin=$OLD; [ "$which" = new ] && bin=$NEW
    N=$((N + 1))
    single=$(measure "$bin" "sqlite://$WORK/s$N.db" durable "$SINGLE" 1)
    rm -f "$WORK/s$N.db"*
    batch=$(measure "$bin" "sqlite://$WORK/b$N.db" async "$BATCH" 100)
    rm -f "$WORK/b$N.db"*
    pg="-"
    if [ -n "$PGDIR" ]; then
      "$PG_BIN/psql" -h "$PGDIR" -U postgres -qc "create database w$N"
      pg=$(measure "$bin" "postgres://postgres@localhost/w$N?host=$PGDIR" durable "$BATCH" 100)
      "$PG_BIN/psql" -h "$PGDIR" -U postgres -qc "drop database w$N"
    fi
    printf '| %s | %s | %s | %s | %s |\n' "$round" "$which" "$single" "$batch" "$pg" | tee -a "$WORK/rows"
  done
done
echo
awk -F'|' '{ b = $3; gsub(/ /, "", b); for (i = 4; i <= 6; i++) { v = $i; gsub(/ /, "", v); s[b, i] += v }; n[b]++ }
  END { printf "| mean | old | %.0f | %.0f | %.0f |\n", s["old",4]/n["old"], s["old",5]/n["old"], s["old",6]/n["old"];
        printf "| mean | new | %.0f | %.0f | %.0f |\n", s["new",4]/n["new"], s["new",5]/n["new"], s["new",6]/n["new"];
        printf "| new / old | | %.3f | %.3f | %.3f |\n", s["new",4]/s["old",4], s["new",5]/s["old",5], (s["old",6] > 0 ? s["new",6]/s["old",6] : 0) }' "$WORK/rows"
echo
echo "$(nproc) cores, $(date -u +%Y-%m-%d), ${DURATION}s per measurement"
