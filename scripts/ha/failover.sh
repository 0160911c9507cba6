#!/usr/bin/env bash
# The ledger on a highly available PostgreSQL cluster, proven by failover under load
# (issue 14; see docs/operations.md, "Running on a PostgreSQL cluster").
#
# Builds a three-node Patroni cluster (etcd + three PostgreSQL 15 with
# `synchronous_mode: true`) on loopback ports in a temporary folder, runs
# `ledger serve` against it with a multi-host --store URL under 16 writing clients,
# and breaks the cluster in rounds (kill -9 of the leader's postmaster, a
# switchover, a stopped synchronous standby, etcd paused past the TTL), checking
# after each that no acknowledged write is lost, no erasure is half done, the audit
# is clean and revenue moved by exactly the acknowledged payments. The work is
# done by harness.py (Python standard library); this script owns the temporary
# folder and stops everything it started, whatever happens.
#
# Usage: scripts/ha/failover.sh [--rounds N | --short] [--bench "ARGS"]
#   --rounds N   N rounds of the four failovers (default 5: 20 failovers)
#   --short      one failover of each kind (for CI)
#   --bench ARGS then run `ledger bench ARGS` on the cluster and on the single
#                server HA_SINGLE_URL (default postgres://postgres@127.0.0.1:5432/postgres);
#                each makes and drops its own scratch database
# Needs: root (PostgreSQL and Patroni run as the `postgres` user), the Debian
# packages patroni and etcd-server, PostgreSQL 15 in /usr/lib/postgresql/15/bin.
# LEDGER_BIN: the ledger binary (default: target/debug/ledger of this checkout).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
ledger_bin="${LEDGER_BIN:-${CARGO_TARGET_DIR:-$repo/target}/debug/ledger}"

for tool in patroni patronictl etcd setpriv python3 "/usr/lib/postgresql/15/bin/postgres"; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "failover.sh: $tool not found (apt-get install patroni etcd-server postgresql-15)" >&2
        exit 2
    fi
done
if [ ! -x "$ledger_bin" ]; then
    echo "failover.sh: no ledger binary at $ledger_bin (cargo build -p ledger-cli --features postgres, or set LEDGER_BIN)" >&2
    exit 2
fi
if [ "$(id -u)" != 0 ]; then
    echo "failover.sh: run as root (PostgreSQL and Patroni are started as the postgres user)" >&2
    exit 2
fi

args=()
bench=""
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) args+=(--rounds "$2"); shift 2 ;;
        --short) args+=(--short); shift ;;
        --bench) bench="$2"; shift 2 ;;
        -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
        *) echo "failover.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

dir="$(mktemp -d /tmp/ledger-ha.XXXXXX)"
chmod 755 "$dir"

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    # Every process group harness.py started (etcd, the Patroni nodes, ledger serve):
    # resume a paused etcd, ask politely, then insist.
    if [ -d "$dir/pids" ]; then
        for f in "$dir"/pids/*; do
            [ -e "$f" ] || continue
            pid="$(cat "$f")"
            kill -CONT -- "-$pid" 2>/dev/null || true
            kill -TERM -- "-$pid" 2>/dev/null || true
        done
        sleep 3
        for f in "$dir"/pids/*; do
            [ -e "$f" ] || continue
            kill -KILL -- "-$(cat "$f")" 2>/dev/null || true
        done
    fi
    # PostgreSQL servers left by a killed Patroni: by their own data folders only.
    for data in "$dir"/node*/data; do
        [ -f "$data/postmaster.pid" ] || continue
        setpriv --reuid=postgres --regid=postgres --init-groups \
            /usr/lib/postgresql/15/bin/pg_ctl -D "$data" stop -m immediate >/dev/null 2>&1 || true
        pid="$(head -1 "$data/postmaster.pid" 2>/dev/null || true)"
        [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null || true
    done
    if [ "${HA_KEEP:-}" = 1 ]; then
        echo "failover.sh: HA_KEEP=1: logs left in $dir" >&2
    else
        rm -rf "$dir"
    fi
    exit "$status"
}
trap cleanup EXIT INT TERM

if [ -n "$bench" ]; then
    args+=(--bench "$bench" --single-url "${HA_SINGLE_URL:-postgres://postgres@127.0.0.1:5432/postgres}")
fi

echo "failover.sh: working in $dir with $ledger_bin"
python3 "$here/harness.py" --dir "$dir" --ledger "$ledger_bin" "${args[@]}"
