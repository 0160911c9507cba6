#!/usr/bin/env bash
# Runs `ledger bench` and the peer (Python `eventsourcing` 9.5.6 on SQLite) in the
# same run on the same machine, so the figures can be put side by side.
# Usage: scripts/bench-vs-peer.sh [extra `ledger bench` flags]
set -euo pipefail
cd "$(dirname "$0")/.."
peer=${PEER_SCRIPT:-../shared/bench/peer_eventsourcing.py}
venv=${PEER_VENV:-/tmp/peer-venv}

cargo build --release --bin ledger
scratch=$(mktemp -d ./bench-scratch.XXXXXX)
trap 'rm -rf "$scratch"' EXIT

echo "== ledger bench =="
./target/release/ledger --data "$scratch" bench "$@"

if [ ! -f "$peer" ]; then
  echo "peer benchmark not found at $peer (set PEER_SCRIPT); skipped"
  exit 0
fi
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet eventsourcing==9.5.6
fi
export PEER_DB="$scratch/peer.db"
echo "== peer: eventsourcing on SQLite, one commit per event =="
"$venv/bin/python" "$peer" per_event 1000 10
echo "== peer: eventsourcing on SQLite, 1,000 events per commit =="
"$venv/bin/python" "$peer" batched 10000 10
