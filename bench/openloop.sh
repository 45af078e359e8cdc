#!/usr/bin/env bash
# Open-loop latency, as users see it: single-row /predict sent on a fixed schedule at each
# RATE (req/s in all, over 64 connections), durable and async, each on a fresh server and
# store, with latency measured from the moment each request was due (`loadgen --rate`: a
# stall is charged for every request that should have gone out meanwhile) and exact
# percentiles. Prints one Markdown table.
#
#   bench/openloop.sh [BINARY]     (default: target/release/inferlog, built if missing)
#
# RATES (default "1000 5000 10000 20000"), DURATION (s, default 20) per figure, LABEL (the
# binary's commit, for the last line; default this checkout's). A rate the
# server cannot sustain shows as an achieved rate below it and latencies that grow with the
# run: the queue of requests that are due but not sent.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release/inferlog}
RATES=${RATES:-"1000 5000 10000 20000"}
DURATION=${DURATION:-20}
PORT=${PORT:-18184}
[ -x "$BIN" ] || cargo build --release --quiet --bin inferlog
cargo build --release --quiet --example loadgen
LOADGEN=target/release/examples/loadgen
WORK=$(mktemp -d)
trap 'kill "${SERVER:-0}" 2>/dev/null || true; rm -rf "$WORK"' EXIT

echo "| mode | rate (req/s) | achieved | p50 | p99 | p99.9 | max | non-2xx | errors |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for mode in durable async; do
  for rate in $RATES; do
    rm -f "$WORK"/t.db* "$WORK"/t.log
    "$BIN" serve --bind "127.0.0.1:$PORT" --models models --database-url "sqlite://$WORK/t.db" \
      --audit-mode "$mode" --log-file "$WORK/t.log" &
    SERVER=$!
    "$LOADGEN" --addr "127.0.0.1:$PORT" --wait-ready 30
    "$LOADGEN" --addr "127.0.0.1:$PORT" --method POST --path /predict \
      --body '{"features": [5.8, 2.7, 5.1, 1.9]}' --connections 64 --duration "$DURATION" \
      --rate "$rate" >"$WORK/r.json"
    kill -TERM "$SERVER"
    wait "$SERVER" || true
    python3 - "$WORK/r.json" "$mode" "$rate" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
ms = lambda us: f"{us / 1000:.2f} ms"
print(f"| {sys.argv[2]} | {int(sys.argv[3]):,} | {r['rps']:,.0f} | {ms(r['p50_us'])} | {ms(r['p99_us'])} "
      f"| {ms(r['p999_us'])} | {ms(r['max_us'])} | {r['non_2xx']:,} | {r['errors']:,} |")
PY
  done
done
echo
# LABEL names the binary's commit when it is not this checkout's build.
echo "$(nproc) cores, ${LABEL:-$(git rev-parse --short HEAD 2>/dev/null || echo '?')}, $(date -u +%Y-%m-%d)"
