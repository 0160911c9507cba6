#!/usr/bin/env bash
# The change feed's figure (issue 13): one NDJSON reader of GET /v1/events reading
# a demo log from position 0 to its end, over HTTP, against `ledger serve --demo`
# (release build), RUNS times; prints each run and the median events/s.
#   scripts/feed/run.sh           (needs python3; builds the release binary)
# Env: CUSTOMERS (demo customers, default 40000: about 440,000 records), RUNS (3),
# LIMIT (events per page, default 10000, the maximum), PORT (18090).
set -euo pipefail
cd "$(dirname "$0")/../.."
CUSTOMERS=${CUSTOMERS:-40000}; RUNS=${RUNS:-3}; LIMIT=${LIMIT:-10000}; PORT=${PORT:-18090}
cargo build --release -p ledger-cli
DATA=$(mktemp -d)
ADMIN=lka_feed-bench-admin-key-0123456789abcdefghij
LEDGER_LOG=warn LEDGER_ADMIN_KEY=$ADMIN ./target/release/ledger --data "$DATA/d" serve --demo \
  --demo-customers "$CUSTOMERS" --listen "127.0.0.1:$PORT" >"$DATA/out" 2>"$DATA/err" &
PID=$!
trap 'kill -TERM $PID 2>/dev/null || true; wait $PID 2>/dev/null || true; rm -rf "$DATA"' EXIT
for _ in $(seq 1 1800); do grep -q '^try:' "$DATA/out" 2>/dev/null && break; sleep 0.2; done
grep -q '^try:' "$DATA/out" || { echo "the server did not start"; cat "$DATA/err"; exit 1; }
rates=()
for i in $(seq 1 "$RUNS"); do
  line=$(python3 scripts/feed/reader.py "http://127.0.0.1:$PORT" "$ADMIN" "$LIMIT")
  echo "run $i: $line"
  rates+=("$(echo "$line" | python3 -c 'import json,sys; print(json.load(sys.stdin)["events_per_s"])')")
done
printf '%s\n' "${rates[@]}" | sort -n | awk '{a[NR]=$1} END {print "median events/s (one NDJSON reader over HTTP): " a[int((NR+1)/2)]}'
