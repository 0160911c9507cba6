#!/usr/bin/env bash
# Reruns every benchmark the README quotes and prints its tables, with the date and
# the machine, so the README's figures are pasted from one run and never typed:
#   scripts/readme-figures.sh            (or: just figures)
# It runs, in this order and in one go: `ledger bench` (appends, bulk, replay) and
# the peer (Python eventsourcing 9.5.6 on SQLite) in the same run; `ledger bench
# --read-side` and the peer's projection rebuild; then the API under wrk
# (scripts/wrk/run.sh); the change feed with the peer over as many events
# (scripts/feed/run.sh); start-up and memory of `serve` (scripts/startup/run.sh).
# Needs: a Rust toolchain, python3 (venv), wrk, curl.
# Env: RUNS (3), CUSTOMERS (read side, 100000), DURATION (wrk, 15s), PEER_SCRIPT.
# Measure with nothing else running: every figure here is a median of RUNS, and
# every speed is also given as a ratio to the peer measured in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}; CUSTOMERS=${CUSTOMERS:-100000}
peer=${PEER_SCRIPT:-../shared/bench/peer_eventsourcing.py}
venv=${PEER_VENV:-/tmp/peer-venv}
out=$(mktemp -d ./bench-scratch.XXXXXX)
trap 'rm -rf "$out"' EXIT

cargo build --release --bin ledger
if [ -f "$peer" ] && [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet eventsourcing==9.5.6
fi
peer_run() { # mode n e -> output of the peer, or nothing without it
  if [ -f "$peer" ]; then PEER_DB="$out/peer.db" "$venv/bin/python" "$peer" "$@"; fi
}

echo "running ledger bench ($RUNS runs)..." >&2
./target/release/ledger --data "$out/w" bench --runs "$RUNS" --json > "$out/write.json"
echo "running the peer (one commit per event, batched)..." >&2
peer_run per_event 1000 10 > "$out/peer-per-event.txt" || true
peer_run batched 10000 10 > "$out/peer-batched.txt" || true
echo "running ledger bench --read-side ($CUSTOMERS customers, $RUNS runs)..." >&2
./target/release/ledger --data "$out/r" bench --read-side --customers "$CUSTOMERS" --runs "$RUNS" --json > "$out/read.json"
echo "running the API under wrk..." >&2
if command -v wrk >/dev/null 2>&1; then
  scripts/wrk/run.sh > "$out/wrk.txt" 2>/dev/null || true
else
  echo "wrk not found: the API table is left out (apt-get install wrk)" >&2
fi

echo "running the change feed and the peer (scripts/feed/run.sh)..." >&2
RUNS="$RUNS" scripts/feed/run.sh > "$out/feed.txt" 2>/dev/null || true
echo "running serve's start-up over $CUSTOMERS customers (scripts/startup/run.sh)..." >&2
BIN=./target/release/ledger CUSTOMERS="$CUSTOMERS" RUNS="$RUNS" scripts/startup/run.sh > "$out/startup.txt" 2>/dev/null || true

python3 - "$out" <<'PY'
import json, os, re, subprocess, sys, platform, datetime
out = sys.argv[1]
def load(name):
    p = os.path.join(out, name)
    return open(p).read() if os.path.exists(p) else ""
def num(x):
    return f"{x:,.0f}"
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
mem = next((int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0) / 1024 / 1024
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
print(f"Measured {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, commit {commit}, by `scripts/readme-figures.sh`.\n")

w = json.loads(load("write.json") or "{}")
peer_pe = re.search(r"append: [\d,]+ events .*? = ([\d,]+) events/s", load("peer-per-event.txt"))
peer_b = re.search(r"append: [\d,]+ events .*? = ([\d,]+) events/s", load("peer-batched.txt"))
peer_rebuild = re.search(r"projection rebuild .*? = ([\d,]+) events/s", load("peer-batched.txt"))
def pv(m):
    return float(m.group(1).replace(",", "")) if m else None
pe, pb, pr = pv(peer_pe), pv(peer_b), pv(peer_rebuild)
def ratio(a, b):
    return f"x{a / b:.1f}" if a and b else "-"
m = w.get("median", {})
print("| write path (median of runs) | ledger | peer, same run | ratio |")
print("| --- | --- | --- | --- |")
rows = [
    ("1 writer, 1 event per append", m.get("append_1_writer_events_per_s"), pe,
     (m.get("append_1_writer_p50_ms"), m.get("append_1_writer_p99_ms"))),
    (f"{m.get('append_concurrent_writers', 64)} writers, 1 event per append", m.get("append_concurrent_events_per_s"), pe,
     (m.get("append_concurrent_p50_ms"), m.get("append_concurrent_p99_ms"))),
    ("bulk import, 10,000 events per commit", m.get("bulk_import_events_per_s"), pb, None),
    ("replay with both chains verified", m.get("replay_events_per_s"), pr, None),
]
for name, ours, peer, lat in rows:
    extra = f" (p50 {lat[0]:.2f} ms, p99 {lat[1]:.2f} ms)" if lat and None not in lat else ""
    print(f"| {name} | {num(ours) + ' ev/s' if ours else '-'}{extra} | {num(peer) + ' ev/s' if peer else '-'} | {ratio(ours, peer)} |")

r = json.loads(load("read.json") or "{}")
print()
print(f"| read path ({r.get('customers', '?'):,} customers, {r.get('events', '?'):,} events; median of runs) | ledger | peer, same run | ratio |" if r else "| read path | ledger | peer | ratio |")
print("| --- | --- | --- | --- |")
for name, key in [("projection rebuild, persisted", "rebuild_events_per_s_median"),
                  ("fold in memory", "fold_in_memory_events_per_s_median")]:
    ours = r.get(key)
    print(f"| {name} | {num(ours) + ' ev/s' if ours else '-'} | {num(pr) + ' ev/s' if pr else '-'} (its rebuild) | {ratio(ours, pr)} |")
if r:
    print(f"| search index build | {r.get('search_index_build_ms_median', 0):,.0f} ms | - | - |")
    print(f"| search by email, p50 / p99 | {r.get('search_email_p50_us', 0):.1f} / {r.get('search_email_p99_us', 0):.1f} us | - | - |")

wrk = load("wrk.txt")
if wrk:
    print()
    print("| request (wrk, 2 threads, loopback) | requests/s | p50 | p99 |")
    print("| --- | --- | --- | --- |")
    for block in re.split(r"^== ", wrk, flags=re.M)[1:]:
        title = block.splitlines()[0].strip()
        rps = re.search(r"Requests/sec:\s+([\d.]+)", block)
        p50 = re.search(r"^\s+50%\s+(\S+)", block, re.M)
        p99 = re.search(r"^\s+99%\s+(\S+)", block, re.M)
        if rps:
            print(f"| `{title}` | {num(float(rps.group(1)))} | {p50.group(1) if p50 else '-'} | {p99.group(1) if p99 else '-'} |")

feed = load("feed.txt")
m = re.search(r"median events/s \(one NDJSON reader over HTTP\): (\d+)", feed)
if m:
    events = re.search(r'"events": (\d+)', feed)
    print()
    print(f"| change feed, one NDJSON reader over HTTP ({int(events.group(1)):,} events; median of runs) | ledger | peer, same run | ratio |" if events else "| change feed | ledger | peer | ratio |")
    print("| --- | --- | --- | --- |")
    for label, pat in (("its raw notification scan, in process", r"select_notifications scan: .*? = ([\d,]+) rows/s"),
                       ("its projection rebuild", r"projection rebuild .*? = ([\d,]+) events/s")):
        p = re.search(pat, feed)
        peer = float(p.group(1).replace(",", "")) if p else None
        print(f"| `GET /v1/events` vs {label} | {num(float(m.group(1)))} ev/s | {num(peer) + '/s' if peer else '-'} | {ratio(float(m.group(1)), peer)} |")

startup = re.search(r"serve over ([\d,]+) customers, median of \d+ starts: ready \(s\) ([\d.]+), first search \(s\) ([\d.]+), search index \(s\) ([\d.]+), RSS \(MiB\) ([\d.]+), peak RSS \(MiB\) ([\d.]+)", load("startup.txt"))
if startup:
    n, ready, first, index, rss, peak = startup.groups()
    print()
    print(f"| `serve` start-up over {n} customers (median of starts) | ready | first search | search index | RSS (peak) |")
    print("| --- | --- | --- | --- | --- |")
    print(f"| restart on an existing folder | {ready} s | {first} s | {index} s | {float(rss):,.0f} MiB ({float(peak):,.0f} MiB) |")
PY
