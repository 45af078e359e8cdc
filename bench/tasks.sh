#!/usr/bin/env bash
# A regression model's durable request path against a classifier's, on the same server and
# store, in alternating runs: durable single-row /predict to the shipped iris classifier
# (random forest, 100 trees, 4 features) and to a diabetes regressor trained here with the
# same algorithm (random forest, 100 trees, 10 features). Prints one Markdown row per run and
# the regressor's throughput relative to the classifier's.
#
#   bench/tasks.sh [BINARY] [ROUNDS]
#
# BINARY defaults to a release build of this checkout. DURATION (s, default 10) per figure.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release/inferlog}
ROUNDS=${2:-3}
DURATION=${DURATION:-10}
PORT=${PORT:-18183}
if [ -z "${1:-}" ]; then cargo build --release --quiet --bin inferlog; fi
cargo build --release --quiet --example loadgen
LOADGEN=target/release/examples/loadgen
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir "$WORK/models"
cp models/iris.json "$WORK/models/"
SOURCE_DATE_EPOCH=1795737600 "$BIN" train --dataset diabetes --algorithm random-forest \
  --out "$WORK/models/diabetes.json" >/dev/null
IRIS='{"features": [5.8, 2.7, 5.1, 1.9]}'
DIABETES='{"features": [0.038, 0.051, 0.062, 0.022, -0.044, -0.035, -0.043, -0.003, 0.020, -0.018]}'

loadgen() { # path body
  "$LOADGEN" --addr "127.0.0.1:$PORT" --connections 64 --duration "$DURATION" \
    --method POST --path "$1" --body "$2" | sed -E 's/.*"rps":([0-9.]+).*/\1/'
}

printf '| run | classifier req/s | regressor req/s | regressor / classifier |\n'
printf '|---|---:|---:|---:|\n'
for round in $(seq 1 "$ROUNDS"); do
  rm -f "$WORK"/t.db* "$WORK"/t.log
  "$BIN" serve --bind "127.0.0.1:$PORT" --models "$WORK/models" \
    --database-url "sqlite://$WORK/t.db" --log-file "$WORK/t.log" --audit-mode durable &
  server=$!
  "$LOADGEN" --addr "127.0.0.1:$PORT" --wait-ready 30 >/dev/null
  # Alternate which goes first, so neither always meets the fresher store.
  if [ $((round % 2)) -eq 1 ]; then
    c=$(loadgen /models/iris/predict "$IRIS"); r=$(loadgen /models/diabetes/predict "$DIABETES")
  else
    r=$(loadgen /models/diabetes/predict "$DIABETES"); c=$(loadgen /models/iris/predict "$IRIS")
  fi
  kill -TERM "$server"; wait "$server" || true
  awk -v n="$round" -v c="$c" -v r="$r" 'BEGIN { printf "| %d | %.0f | %.0f | %.3f |\n", n, c, r, r / c }'
done
echo
echo "durable, 64 connections, ${DURATION}s per figure, $(nproc) cores, $(date -u +%Y-%m-%d)"
