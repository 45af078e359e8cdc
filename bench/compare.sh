#!/usr/bin/env bash
# Old binary against new, in alternating runs on the same machine: durable single-row
# /predict and /health/live on the same server, each measured with the project's load
# generator and with wrk (-t2 -c64). Prints one Markdown row per run and the ratio
# predict / health of each run (the request path's cost relative to the HTTP ceiling).
#
#   bench/compare.sh OLD_BINARY NEW_BINARY [ROUNDS]
#
# Build each binary with `cargo build --release` at the commit to compare and copy it aside.
# The load generator is built from this checkout. DURATION (s, default 10) per measurement.
set -euo pipefail
cd "$(dirname "$0")/.."
OLD=$1 NEW=$2 ROUNDS=${3:-3}
DURATION=${DURATION:-10}
PORT=${PORT:-18182}
command -v wrk >/dev/null || { echo "wrk is needed (apt-get install wrk)"; exit 1; }
cargo build --release --quiet --example loadgen
LOADGEN=target/release/examples/loadgen
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
SINGLE='{"features": [5.8, 2.7, 5.1, 1.9]}'
cat > "$WORK/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '$SINGLE'
wrk.headers["Content-Type"] = "application/json"
LUA

loadgen() { # method path body
  "$LOADGEN" --addr "127.0.0.1:$PORT" --connections 64 --duration "$DURATION" \
    --method "$1" --path "$2" --body "$3" | sed -E 's/.*"rps":([0-9.]+).*/\1/'
}
wrk_rps() { # extra args
  wrk -t2 -c64 -d"${DURATION}s" "$@" | awk '/Requests\/sec/ {print $2}'
}

printf '| run | binary | loadgen predict | loadgen health | ratio | wrk predict | wrk health | ratio |\n'
printf '|---|---|---:|---:|---:|---:|---:|---:|\n'
for round in $(seq 1 "$ROUNDS"); do
  for which in old new; do
    bin=$OLD; [ "$which" = new ] && bin=$NEW
    rm -f "$WORK"/b.db* "$WORK"/b.log
    "$bin" serve --bind "127.0.0.1:$PORT" --models models --database-url "sqlite://$WORK/b.db" \
      --log-file "$WORK/b.log" --audit-mode durable &
    server=$!
    "$LOADGEN" --addr "127.0.0.1:$PORT" --wait-ready 30 >/dev/null
    lp=$(loadgen POST /predict "$SINGLE")
    lh=$(loadgen GET /health/live "")
    wp=$(wrk_rps -s "$WORK/post.lua" "http://127.0.0.1:$PORT/predict")
    wh=$(wrk_rps "http://127.0.0.1:$PORT/health/live")
    kill -TERM "$server"; wait "$server" || true
    awk -v r="$round" -v b="$which" -v lp="$lp" -v lh="$lh" -v wp="$wp" -v wh="$wh" \
      'BEGIN { printf "| %d | %s | %.0f | %.0f | %.2f | %.0f | %.0f | %.2f |\n", r, b, lp, lh, lp / lh, wp, wh, wp / wh }'
  done
done
echo
echo "durable, 64 connections, ${DURATION}s per figure, $(nproc) cores, $(date -u +%Y-%m-%d)"
