#!/usr/bin/env bash
# Times the README's first command as a new user meets it: a fresh clone, an empty
# cargo cache (crates downloaded from crates.io), a target folder inside the clone,
# from the start of `cargo run --release --bin ledger -- serve --demo` until
# GET /healthz first answers. Prints the build time, the time to the first answer,
# and the load average at start and end (other work on the machine slows a build:
# read the figures with it).
#
#   scripts/first-run-timing.sh [REV]     (default: HEAD of this checkout)
#
# FIRST_RUN_REPO=DIR clones that checkout instead of this one (e.g. when running a
# copy of this script, which is safer while the checkout changes: bash reads a
# script as it runs). FIRST_RUN_TIMINGS=FILE also saves cargo's --timings report (the long poles of
# the build) as FILE.
# Everything it makes (clone, cargo home, data) lives in one temporary folder,
# deleted at the end.
set -euo pipefail
repo=${FIRST_RUN_REPO:-$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)}
rev=$(git -C "$repo" rev-parse "${1:-HEAD}")
limit=${FIRST_RUN_LIMIT_SECS:-3600}

work=$(mktemp -d /tmp/first-run.XXXXXX)
pgid=""
cleanup() {
  if [ -n "$pgid" ]; then kill -TERM -- "-$pgid" 2>/dev/null || true; sleep 2; kill -KILL -- "-$pgid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

git clone -q "$repo" "$work/clone"
git -C "$work/clone" checkout -q "$rev"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export CARGO_HOME="$work/cargo-home" CARGO_TARGET_DIR="$work/clone/target"
unset RUSTC_WRAPPER CARGO_BUILD_JOBS RUSTFLAGS
mkdir -p "$CARGO_HOME"

echo "rev:        $rev"
echo "machine:    $(nproc) cores, $(rustc --version)"
echo "load start: $(uptime | sed 's/.*load average: //')"
start=$(date +%s.%N)
cd "$work/clone"
timings=()
[ -n "${FIRST_RUN_TIMINGS:-}" ] && timings=(--timings)
setsid cargo run --release "${timings[@]}" --bin ledger -- serve --demo --data "$work/data" --listen "127.0.0.1:$port" \
  >"$work/out.log" 2>"$work/err.log" &
pgid=$!
built=""
while :; do
  now=$(date +%s.%N)
  if [ -z "$built" ] && grep -q '^ *Running `' "$work/err.log"; then built=$now; fi
  if curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$pgid" 2>/dev/null; then
    echo "the command ended before answering:"; tail -n 30 "$work/err.log"; exit 1
  fi
  if [ "$(echo "$now - $start > $limit" | bc)" = 1 ]; then echo "no answer after ${limit}s"; exit 1; fi
  sleep 1
done
end=$(date +%s.%N)
if [ -n "${FIRST_RUN_TIMINGS:-}" ]; then
  cp "$CARGO_TARGET_DIR"/cargo-timings/cargo-timing.html "$FIRST_RUN_TIMINGS" 2>/dev/null \
    || echo "no --timings report found"
fi
echo "load end:   $(uptime | sed 's/.*load average: //')"
crates=$(grep -c '^ *Compiling ' "$work/err.log" || true)
kurrent=$(grep -ci 'Compiling kurrentdb ' "$work/err.log" || true)
printf 'compiled:   %s crates (kurrentdb client: %s)\n' "$crates" "$([ "$kurrent" -gt 0 ] && echo yes || echo no)"
printf 'build:      %.0f s (until cargo ran the binary)\n' "$(echo "${built:-$end} - $start" | bc)"
printf 'first answer: %.0f s (GET /healthz 200, from the start of cargo run)\n' "$(echo "$end - $start" | bc)"
