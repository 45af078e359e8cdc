#!/usr/bin/env bash
# Where a request's CPU goes: the server's CPU time per request, by thread, for /health/live,
# durable single-row /predict and async single-row /predict, each under wrk -t2 -c64. Read from
# /proc (utime + stime and context switches of each thread over the measured seconds), so it
# needs no perf and no hardware counters.
#
#   bench/threads.sh [BINARY]     (default: target/release/inferlog, built if missing)
#
# DURATION (s, default 8) per measurement. Prints one Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release/inferlog}
DURATION=${DURATION:-8}
PORT=${PORT:-18183}
command -v wrk >/dev/null || { echo "wrk is needed (apt-get install wrk)"; exit 1; }
[ -x "$BIN" ] || cargo build --release --quiet --bin inferlog
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cat > "$WORK/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"features": [5.8, 2.7, 5.1, 1.9]}'
wrk.headers["Content-Type"] = "application/json"
LUA
TICK=$(getconf CLK_TCK)

# Per thread name: CPU ticks and context switches, summed over threads of the same name.
snapshot() { # pid
  for t in /proc/"$1"/task/*; do
    name=$(tr ' ' '_' < "$t/comm")
    ticks=$(sed 's/.*) //' "$t/stat" | awk '{print $12 + $13}')
    switches=$(awk '/ctxt_switches/ {s += $2} END {print s}' "$t/status")
    echo "$name $ticks $switches"
  done | awk '{t[$1] += $2; s[$1] += $3} END {for (n in t) print n, t[n], s[n]}' | sort
}

measure() { # label audit-mode wrk-args...
  local label=$1 mode=$2
  shift 2
  rm -f "$WORK"/t.db* "$WORK"/t.log
  "$BIN" serve --bind "127.0.0.1:$PORT" --models models --database-url "sqlite://$WORK/t.db" \
    --log-file "$WORK/t.log" --audit-mode "$mode" > "$WORK/server.out" 2>&1 &
  local server=$!
  for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$PORT/health/ready" && break
    sleep 0.1
  done
  wrk -t2 -c64 -d2s "$@" > /dev/null # warm-up
  snapshot "$server" > "$WORK/before"
  local rps
  rps=$(wrk -t2 -c64 -d"${DURATION}s" "$@" | awk '/Requests\/sec/ {print $2}')
  snapshot "$server" > "$WORK/after"
  kill -TERM "$server"
  wait "$server" || true
  join "$WORK/before" "$WORK/after" | awk -v label="$label" -v rps="$rps" -v d="$DURATION" \
    -v tick="$TICK" '
    { name = $1; sub(/^actix-rt\|system.*/, "HTTP workers", name)
      sub(/^sqlx-sqlite-wor.*/, "SQLite (sqlx threads)", name)
      sub(/^inferlog-log$/, "log writer", name); sub(/^inferlog-logflu.*/, "log flusher", name)
      if (name == $1 && $1 ~ /^inferlog/) name = "main (audit writer task)"
      cpu[name] += ($4 - $2) / tick; sw[name] += $5 - $3; total += ($4 - $2) / tick }
    END {
      n = rps * d
      printf "| %s | %.0f | %.1f |", label, rps, total * 1e6 / n
      split("HTTP workers|SQLite (sqlx threads)|main (audit writer task)|log writer", order, "|")
      for (i = 1; i <= 4; i++) printf " %.1f |", cpu[order[i]] * 1e6 / n
      s = 0; for (k in sw) s += sw[k]
      printf " %.2f |\n", s / n
    }'
}

echo "| route | requests/s | server CPU µs/request | HTTP workers | SQLite (sqlx) | main (audit writer) | log writer | thread switches/request |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
measure "GET /health/live" durable "http://127.0.0.1:$PORT/health/live"
measure "POST /predict, durable" durable -s "$WORK/post.lua" "http://127.0.0.1:$PORT/predict"
measure "POST /predict, async" async -s "$WORK/post.lua" "http://127.0.0.1:$PORT/predict"
echo
echo "wrk -t2 -c64, ${DURATION}s per row, $(nproc) cores, $(date -u +%Y-%m-%d)"
