#!/usr/bin/env bash
# Hostile-load benchmark: the release binary under, at once, IDLE connections that never send
# a byte, SLOW clients trickling the largest allowed body, BATCHERS sending the largest valid
# batch and batches five times too large, CHUNKED clients (all from one address, 127.0.0.2)
# holding unfinished chunked bodies of 1 MB, and FLAT senders of one row of 500,000 numbers,
# for DURATION seconds. Meanwhile two separate probers (from 127.0.0.1) call GET /health/live
# and POST /predict (one row) on a new connection every 10 ms, and the server's resident
# memory is sampled every 100 ms; IDLE_WAIT seconds after the load, the idle RSS is read.
#
#   bench/hostile.sh                                   # 60 s, defaults below
#   DURATION=60 IDLE=2000 SLOW=300 BATCHERS=8 CHUNKED=600 FLAT=16 BUDGET_MB=256 bench/hostile.sh
#
# Prints a Markdown table (paste it into BENCHMARKS.md): each probe's p50/p99/max and
# failures, the peak and idle RSS against the configured body budget, and what each kind of
# client got. Needs python3 (standard library only).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-60}
IDLE=${IDLE:-2000}
SLOW=${SLOW:-300}
BATCHERS=${BATCHERS:-8}
CHUNKED=${CHUNKED:-600}
FLAT=${FLAT:-16}
IDLE_WAIT=${IDLE_WAIT:-10}
BUDGET_MB=${BUDGET_MB:-256}
MAX_BODY=${MAX_BODY:-1048576}
MAX_BATCH=${MAX_BATCH:-1000}
PORT=${PORT:-18183}

# The clients' own sockets: IDLE + SLOW + BATCHERS + CHUNKED + FLAT connections at once.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

cargo build --release --quiet --bin inferlog
BIN=target/release/inferlog
WORK=$(mktemp -d)
trap 'kill "$SERVER" 2>/dev/null || true; rm -rf "$WORK"' EXIT

"$BIN" serve --bind "127.0.0.1:$PORT" --models models \
  --database-url "sqlite://$WORK/hostile.db" --log-file "$WORK/server.log" \
  --body-budget-bytes $((BUDGET_MB * 1024 * 1024)) --max-body-bytes "$MAX_BODY" \
  --max-batch "$MAX_BATCH" &
SERVER=$!
for _ in $(seq 1 100); do
  grep -q "listening" "$WORK/server.log" 2>/dev/null && break
  sleep 0.1
done
BASE_RSS_KB=$(awk '/VmRSS/ {print $2}' "/proc/$SERVER/status")

# Memory sampler: the highest VmRSS seen, every 100 ms.
( peak=0
  while kill -0 "$SERVER" 2>/dev/null; do
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$SERVER/status" 2>/dev/null || echo 0)
    [ "${rss:-0}" -gt "$peak" ] && peak=$rss && echo "$peak" > "$WORK/peak"
    sleep 0.1
  done ) &
SAMPLER=$!

python3 bench/hostile.py probe "127.0.0.1:$PORT" "$DURATION" 10 > "$WORK/probe.json" &
PROBE=$!
python3 bench/hostile.py probe "127.0.0.1:$PORT" "$DURATION" 10 predict > "$WORK/predict.json" &
PREDICT=$!
python3 bench/hostile.py load "127.0.0.1:$PORT" "$DURATION" "$IDLE" "$SLOW" "$BATCHERS" \
  "$MAX_BODY" "$MAX_BATCH" "$CHUNKED" "$FLAT" > "$WORK/load.json"
wait "$PROBE" "$PREDICT"
HWM_KB=$(awk '/VmHWM/ {print $2}' "/proc/$SERVER/status")
sleep "$IDLE_WAIT"
IDLE_KB=$(awk '/VmRSS/ {print $2}' "/proc/$SERVER/status")
kill -TERM "$SERVER"
wait "$SERVER" || true
kill "$SAMPLER" 2>/dev/null || true
ERRORS=$(grep -c " ERRO \| CRIT " "$WORK/server.log" || true)
grep " ERRO \| CRIT " "$WORK/server.log" | cut -c1-300 | sort | uniq -c | sort -rn | head -5 >&2 || true

python3 - "$WORK/probe.json" "$WORK/load.json" "$BASE_RSS_KB" "$HWM_KB" "$BUDGET_MB" "$ERRORS" \
  "$WORK/predict.json" "$IDLE_KB" "$IDLE_WAIT" <<'PY'
import json, sys
probe = json.load(open(sys.argv[1]))
load = json.load(open(sys.argv[2]))
base, hwm, budget, errors = int(sys.argv[3]) / 1024, int(sys.argv[4]) / 1024, int(sys.argv[5]), sys.argv[6]
predict = json.load(open(sys.argv[7]))
idle, idle_wait = int(sys.argv[8]) / 1024, sys.argv[9]
print("| measure | value |")
print("|---|---|")
for name, p in [("`/health/live`", probe), ("one-row `POST /predict`", predict)]:
    print(f"| {name} probes (new connection every 10 ms) | {p['probes']} |")
    print(f"| {name} p50 / p99 / max | {p['p50_ms']} / {p['p99_ms']} / {p['max_ms']} ms |")
    print(f"| {name} failures | {p['failures'] or 'none'} |")
print(f"| RSS at start / peak (VmHWM) / idle {idle_wait} s after | {base:.0f} MB / {hwm:.0f} MB / {idle:.0f} MB |")
print(f"| body budget | {budget} MB |")
print(f"| peak over start | {hwm - base:.0f} MB |")
print(f"| ERROR/CRIT log lines | {errors} |")
for k, v in load.items():
    print(f"| {k} | {v} |")
PY
echo
echo "duration ${DURATION}s, idle ${IDLE}, slow ${SLOW}, batchers ${BATCHERS}, chunked ${CHUNKED}, flat ${FLAT}, $(nproc) cores, $(date -u +%Y-%m-%d)"
