#!/usr/bin/env bash
# Start-up and memory of `ledger serve` over a data folder of CUSTOMERS demo
# customers (issue 15): the folder is made once with `serve --demo`, then `serve`
# is started on it RUNS times and each start reports
#   - ready: seconds from launch to the first 200 from /readyz (log opened, read
#     model loaded and caught up, search index built, listening);
#   - first search: seconds from launch to the first answer of an authenticated
#     POST /v1/customers/search (20 hits);
#   - search index: the build time `serve` logs ("search index built in memory");
#   - RSS after the first search, and its peak (VmRSS, VmHWM).
# Then prints the median of each.
#   scripts/startup/run.sh                 (CUSTOMERS=100000 by default)
#   CUSTOMERS=1000000 scripts/startup/run.sh
# Env: CUSTOMERS, RUNS (3), PORT (18095), BIN (default: builds the release binary).
# Needs python3 and curl.
set -euo pipefail
cd "$(dirname "$0")/../.."
CUSTOMERS=${CUSTOMERS:-100000}; RUNS=${RUNS:-3}; PORT=${PORT:-18095}
if [ -z "${BIN:-}" ]; then
  cargo build --release -p ledger-cli
  BIN=./target/release/ledger
fi
DATA=$(mktemp -d)
PID=
trap '[ -n "$PID" ] && { kill -TERM $PID 2>/dev/null || true; wait $PID 2>/dev/null || true; }; [ -n "${KEEP_LOG:-}" ] && cp "$DATA/serve.err" "$KEEP_LOG"; rm -rf "$DATA"' EXIT
BASE="http://127.0.0.1:$PORT"

echo "making a folder of $CUSTOMERS demo customers..." >&2
made=$(date +%s.%N)
LEDGER_LOG=warn "$BIN" --data "$DATA/d" serve --demo --demo-customers "$CUSTOMERS" \
  --listen "127.0.0.1:$PORT" >"$DATA/demo.out" 2>"$DATA/demo.err" &
PID=$!
for _ in $(seq 1 36000); do grep -q '^try:' "$DATA/demo.out" 2>/dev/null && break; sleep 0.1; done
grep -q '^try:' "$DATA/demo.out" || { echo "the demo server did not start"; tail -5 "$DATA/demo.err"; exit 1; }
KEY=$(grep '^try:' "$DATA/demo.out" | sed -E 's/.*Bearer ([^'"'"']+).*/\1/')
kill -TERM $PID; wait $PID 2>/dev/null || true; PID=
echo "folder made in $(python3 -c "import time; print(round(time.time() - $made, 1))") s ($(du -sh "$DATA/d" | cut -f1))" >&2

: >"$DATA/runs"
for i in $(seq 1 "$RUNS"); do
  start=$(date +%s.%N)
  LEDGER_LOG=info "$BIN" --data "$DATA/d" serve --listen "127.0.0.1:$PORT" >"$DATA/serve.out" 2>"$DATA/serve.err" &
  PID=$!
  ready=
  for _ in $(seq 1 12000); do
    if [ "$(curl -s -o /dev/null -w '%{http_code}' "$BASE/readyz" 2>/dev/null)" = 200 ]; then
      ready=$(date +%s.%N); break
    fi
    kill -0 $PID 2>/dev/null || { echo "serve exited"; tail -5 "$DATA/serve.err"; exit 1; }
    sleep 0.05
  done
  [ -n "$ready" ] || { echo "serve was not ready after 10 minutes"; exit 1; }
  code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $KEY" \
    -H 'Content-Type: application/json' -d '{"q":"ma","limit":20}' "$BASE/v1/customers/search")
  searched=$(date +%s.%N)
  [ "$code" = 200 ] || { echo "the first search answered $code"; exit 1; }
  rss=$(awk '/^VmRSS/ {print $2}' /proc/$PID/status)
  hwm=$(awk '/^VmHWM/ {print $2}' /proc/$PID/status)
  index_ms=$(grep -o 'search index built in memory.*' "$DATA/serve.err" | grep -oE 'ms=[0-9]+' | head -1 | cut -d= -f2)
  kill -TERM $PID; wait $PID 2>/dev/null || true; PID=
  python3 - "$start" "$ready" "$searched" "$rss" "$hwm" "${index_ms:-0}" "$i" <<'PY' | tee -a "$DATA/runs"
import sys
start, ready, searched = (float(x) for x in sys.argv[1:4])
rss, hwm, index_ms, i = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), sys.argv[7]
print(f"run {i}: ready {ready - start:.2f} s, first search {searched - start:.2f} s, "
      f"search index {index_ms / 1000:.2f} s, RSS {rss / 1024:.0f} MiB (peak {hwm / 1024:.0f} MiB)")
PY
done
python3 - "$CUSTOMERS" "$DATA/runs" <<'PY'
import re, statistics, sys
n, lines = int(sys.argv[1]), open(sys.argv[2]).read().splitlines()
cols = list(zip(*[[float(x) for x in re.findall(r"([\d.]+) (?:s|MiB)", l)] for l in lines]))
names = ["ready (s)", "first search (s)", "search index (s)", "RSS (MiB)", "peak RSS (MiB)"]
print(f"serve over {n:,} customers, median of {len(lines)} starts: " +
      ", ".join(f"{name} {statistics.median(c):g}" for name, c in zip(names, cols)))
PY
