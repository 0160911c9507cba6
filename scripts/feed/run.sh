#!/usr/bin/env bash
# The change feed's figure (issue 13): one NDJSON reader of GET /v1/events reading
# a demo log from position 0 to its end, over HTTP, against `ledger serve --demo`
# (release build), RUNS times; prints each run and the median events/s. Then, in the
# same run, the peer (Python eventsourcing 9.5.6 on SQLite, ../shared/bench) over as
# many events: its raw notification scan (in process, nothing decoded) and its
# projection rebuild (decoded), with our median as a ratio to each.
#   scripts/feed/run.sh           (needs python3; builds the release binary)
# Env: CUSTOMERS (demo customers, default 40000: about 440,000 records), RUNS (3),
# LIMIT (events per page, default 10000, the maximum), PORT (18090), PEER_SCRIPT,
# PEER_VENV (/tmp/peer-venv, made with pip if missing).
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
rates=(); events=0
for i in $(seq 1 "$RUNS"); do
  line=$(python3 scripts/feed/reader.py "http://127.0.0.1:$PORT" "$ADMIN" "$LIMIT")
  echo "run $i: $line"
  rates+=("$(echo "$line" | python3 -c 'import json,sys; print(json.load(sys.stdin)["events_per_s"])')")
  events=$(echo "$line" | python3 -c 'import json,sys; print(json.load(sys.stdin)["events"])')
done
median=$(printf '%s\n' "${rates[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
echo "median events/s (one NDJSON reader over HTTP): $median"
kill -TERM $PID 2>/dev/null || true; wait $PID 2>/dev/null || true
peer=${PEER_SCRIPT:-../shared/bench/peer_eventsourcing.py}
venv=${PEER_VENV:-/tmp/peer-venv}
if [ ! -f "$peer" ]; then echo "peer benchmark not found at $peer (set PEER_SCRIPT): no ratio"; exit 0; fi
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" && "$venv/bin/pip" install --quiet eventsourcing==9.5.6
fi
echo "== peer: eventsourcing on SQLite, $(( events / 10 )) aggregates of 10 events (1,000 per commit)"
PEER_DB="$DATA/peer.db" "$venv/bin/python" "$peer" batched $(( events / 10 )) 10 | tee "$DATA/peer.txt"
python3 - "$median" "$DATA/peer.txt" <<'PY'
import re, sys
ours, text = float(sys.argv[1]), open(sys.argv[2]).read()
for label, pat in (("raw notification scan", r"select_notifications scan: .*? = ([\d,]+) rows/s"),
                   ("projection rebuild", r"projection rebuild .*? = ([\d,]+) events/s")):
    m = re.search(pat, text)
    if m:
        peer = float(m.group(1).replace(",", ""))
        print(f"feed {ours:,.0f} events/s vs the peer's {label} {peer:,.0f}/s: x{ours / peer:.2f}")
PY
