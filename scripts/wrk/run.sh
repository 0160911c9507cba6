#!/usr/bin/env bash
# Reproduces the API figures: ledger serve --demo (release) on loopback, then wrk.
#   scripts/wrk/run.sh            (needs: wrk, python3; builds the release binary)
# Env: DURATION (default 15s), CONNS (64), THREADS (2), ERASABLE (30000), PORT (18080),
# ONLY=anonymize (the erasure run alone: 16 clients, each request a different customer).
# The erasure run fails if wrk sent more requests than there were fresh customers:
# the rest would be idempotent replays, much faster than erasures, and would make
# the percentiles look better than they are (raise ERASABLE).
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION=${DURATION:-15s}; CONNS=${CONNS:-64}; THREADS=${THREADS:-2}
ERASABLE=${ERASABLE:-30000}; PORT=${PORT:-18080}
cargo build --release -p ledger-cli
DATA=$(mktemp -d)
OUT="$DATA/serve.out"
LEDGER_LOG=warn ./target/release/ledger --data "$DATA/d" serve --demo --listen "127.0.0.1:$PORT" >"$OUT" 2>"$DATA/serve.err" &
PID=$!
trap 'kill -TERM $PID 2>/dev/null || true; wait $PID 2>/dev/null || true; rm -rf "$DATA"' EXIT
for _ in $(seq 1 600); do grep -q '^try:' "$OUT" 2>/dev/null && break; sleep 0.2; done
TRY=$(grep '^try:' "$OUT")
KEY=$(echo "$TRY" | sed -E 's/.*Bearer ([^'"'"']+).*/\1/')
URL=$(echo "$TRY" | awk '{print $NF}')
BASE="http://127.0.0.1:$PORT"
if [ "${ONLY:-}" != anonymize ]; then
echo "== GET /v1/customers/{id}"
wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -H "Authorization: Bearer $KEY" "$URL"
echo "== GET /v1/customers?q=...&limit=20"
wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -H "Authorization: Bearer $KEY" -s scripts/wrk/search.lua "$BASE"
echo "== POST /v1/customers/search {q, limit: 20}"
wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -H "Authorization: Bearer $KEY" -s scripts/wrk/search_post.lua "$BASE"
fi
echo "== POST /v1/customers/{id}/anonymize (each request a different customer)"
python3 scripts/wrk/prepare_erasable.py "$BASE" "$KEY" "$ERASABLE" "$DATA/ids.txt"
IDS="$DATA/ids.txt" NTHREADS="$THREADS" wrk -t"$THREADS" -c16 -d5s --latency \
  -H "Authorization: Bearer $KEY" -s scripts/wrk/anonymize.lua "$BASE" | tee "$DATA/anonymize.txt"
curl -s "$BASE/metrics" | grep -E '^ledger_(erasures|events_appended)_total'
sent=$(awk '/requests in/ {print $1}' "$DATA/anonymize.txt")
if [ "${sent:-0}" -gt "$ERASABLE" ]; then
  echo "the erasure run sent $sent requests for $ERASABLE fresh customers: the rest were replays; its figures are not valid (raise ERASABLE)" >&2
  exit 1
fi
