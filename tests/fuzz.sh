#!/usr/bin/env bash
# Runs the request-parsing fuzz properties (tests/api/fuzz.rs) for a set time:
#   tests/fuzz.sh 10          # ten minutes
# Each round runs every property with PROPTEST_CASES cases (default 20000) from a fresh seed;
# any failure stops the run and proptest prints the minimal failing input.
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-10}
cases=${PROPTEST_CASES:-20000}
cargo test --test api --no-run --quiet
end=$(( $(date +%s) + minutes * 60 ))
rounds=0
while [ "$(date +%s)" -lt "$end" ]; do
  PROPTEST_CASES=$cases cargo test --quiet --test api fuzz_ >/dev/null 2>&1 || {
    echo "failure in round $((rounds + 1)); rerun to see it:"
    echo "  PROPTEST_CASES=$cases cargo test --test api fuzz_"
    exit 1
  }
  rounds=$((rounds + 1))
done
echo "fuzz: $rounds rounds x 5 properties x $cases cases in $minutes min, no failure"
