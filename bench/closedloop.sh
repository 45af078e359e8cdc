#!/usr/bin/env bash
# Closed-loop latency and throughput: single-row /predict under wrk with few and many
# connections (each sends its next request when the last answer came), durable and async,
# each on a fresh server and store. Prints one Markdown table; the ratios that matter are
# durable against async in the same run.
#
#   bench/closedloop.sh [BINARY]     (default: target/release/inferlog, built if missing)
#
# CONNECTIONS (default "4 64"), DURATION (s, default 15) per figure.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release/inferlog}
CONNECTIONS=${CONNECTIONS:-"4 64"}
DURATION=${DURATION:-15}
PORT=${PORT:-18185}
command -v wrk >/dev/null || { echo "wrk is needed (apt-get install wrk)"; exit 1; }
[ -x "$BIN" ] || cargo build --release --quiet --bin inferlog
cargo build --release --quiet --example loadgen
LOADGEN=target/release/examples/loadgen
WORK=$(mktemp -d)
trap 'kill "${SERVER:-0}" 2>/dev/null || true; rm -rf "$WORK"' EXIT
cat > "$WORK/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"features": [5.8, 2.7, 5.1, 1.9]}'
wrk.headers["Content-Type"] = "application/json"
-- Latencies in µs, as wrk keeps them, so the table is not rounded to wrk's display units.
done = function(summary, latency, requests)
  io.write(string.format("RESULT %.0f %d %d %d %d %d\n", summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99), latency.max,
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
LUA

echo "| connections | mode | req/s | p50 | p99 | max | non-2xx | errors |"
echo "|---:|---|---:|---:|---:|---:|---:|---:|"
for c in $CONNECTIONS; do
  for mode in durable async; do
    rm -f "$WORK"/t.db* "$WORK"/t.log
    "$BIN" serve --bind "127.0.0.1:$PORT" --models models --database-url "sqlite://$WORK/t.db" \
      --audit-mode "$mode" --log-file "$WORK/t.log" &
    SERVER=$!
    "$LOADGEN" --addr "127.0.0.1:$PORT" --wait-ready 30
    wrk -t2 -c"$c" -d"${DURATION}s" -s "$WORK/post.lua" "http://127.0.0.1:$PORT/predict" \
      | awk -v c="$c" -v m="$mode" '/^RESULT/ {
          printf "| %d | %s | %.0f | %.2f ms | %.2f ms | %.2f ms | %d | %d |\n", c, m, $2, $3 / 1000, $4 / 1000, $5 / 1000, $6, $7 }'
    kill -TERM "$SERVER"
    wait "$SERVER" || true
  done
done
echo
echo "wrk -t2, ${DURATION}s per figure, $(nproc) cores, $(git rev-parse --short HEAD), $(date -u +%Y-%m-%d)"
