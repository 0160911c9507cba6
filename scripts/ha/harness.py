#!/usr/bin/env python3
"""The failover test of `scripts/ha/failover.sh` (issue 14), Python standard library only.

Builds a three-node Patroni cluster (one etcd, three PostgreSQL 15 with
`synchronous_mode: true`) on loopback ports under DIR, runs `ledger serve` against it
with a multi-host `--store` URL under a write load (16 clients registering, paying
and erasing through the API), and breaks the cluster in rounds:

  crash       kill -9 the leader's postmaster
  switchover  `patronictl switchover` to the synchronous standby
  replica     stop the synchronous standby (Patroni moves synchronous replication)
  dcs         SIGSTOP etcd for longer than the TTL (the leader demotes itself)

After each round the load pauses (every write in flight gets its final answer) and
the harness checks: every acknowledged write is in the log where its answer put it,
no erasure is half done (an erasure event without a destroyed key, or a destroyed
key without its event), `ledger audit verify` is clean, and revenue equals the
revenue before the load plus the acknowledged payments. It prints the write
downtime of each failover (first failed write to first succeeded write) and, at the
end, the counts and the per-kind p50 and max. Exit status 0 only if every check held.

Every process it starts is recorded in DIR/pids (one process group each);
`failover.sh` stops them and deletes DIR whatever happens. Nothing here prints
personal data: the load's profiles are synthetic and only ids and counts are shown.
"""

import argparse
import http.client
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid

PG_BIN = "/usr/lib/postgresql/15/bin"
CLIENTS = 16
KINDS = ["crash", "switchover", "replica", "dcs"]
# Patroni's defaults; the downtime of each kind depends on them (see the report).
TTL, LOOP_WAIT, RETRY_TIMEOUT = 30, 10, 10
# A write is retried (same request, same Idempotency-Key) after a 503 for this long.
GIVE_UP = 240.0


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_ports(n):
    """n distinct loopback ports that are free now (bound, then released)."""
    socks, ports = [], []
    while len(ports) < n:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        # Keep clear of the servers this machine already runs.
        if port not in (5432, 6379, 5672, 15672, 3306, 4222, 8222) and port not in ports:
            socks.append(s)
            ports.append(port)
    for s in socks:
        s.close()
    return ports


class Procs:
    """Processes started here, each in its own process group, recorded in DIR/pids."""

    def __init__(self, root):
        self.root = root
        os.makedirs(os.path.join(root, "pids"), exist_ok=True)

    def start(self, name, argv, user=None, env=None, stdout=None):
        if user:
            argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups"] + argv
        out = stdout or open(os.path.join(self.root, "logs", f"{name}.log"), "ab")
        p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT if stdout is None else out,
                             stdin=subprocess.DEVNULL, start_new_session=True, env=env)
        with open(os.path.join(self.root, "pids", name), "w") as f:
            f.write(str(p.pid))
        return p

    def stop(self, name, p, sig=signal.SIGTERM, wait=30):
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            pass
        try:
            p.wait(wait)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)
        try:
            os.remove(os.path.join(self.root, "pids", name))
        except FileNotFoundError:
            pass


class Cluster:
    def __init__(self, root, procs):
        self.root, self.procs = root, procs
        (self.etcd_port, self.etcd_peer, *rest) = free_ports(8)
        self.pg_ports, self.api_ports = rest[:3], rest[3:6]
        self.names = ["node1", "node2", "node3"]
        self.patroni = {}
        self.etcd = None

    def config(self, i):
        name, root = self.names[i], self.root
        d = os.path.join(root, name)
        return f"""scope: ledger-ha
name: {name}
restapi:
  listen: 127.0.0.1:{self.api_ports[i]}
  connect_address: 127.0.0.1:{self.api_ports[i]}
etcd3:
  hosts: 127.0.0.1:{self.etcd_port}
bootstrap:
  dcs:
    ttl: {TTL}
    loop_wait: {LOOP_WAIT}
    retry_timeout: {RETRY_TIMEOUT}
    maximum_lag_on_failover: 1048576
    synchronous_mode: true
    postgresql:
      use_pg_rewind: true
      parameters:
        wal_level: replica
        hot_standby: "on"
        wal_log_hints: "on"
        max_wal_senders: 10
        max_replication_slots: 10
        wal_keep_size: 256MB
  initdb:
    - encoding: UTF8
    - data-checksums
  pg_hba:
    - host replication replicator 127.0.0.1/32 trust
    - host all all 127.0.0.1/32 trust
    - local all all trust
postgresql:
  listen: 127.0.0.1:{self.pg_ports[i]}
  connect_address: 127.0.0.1:{self.pg_ports[i]}
  data_dir: {d}/data
  bin_dir: {PG_BIN}
  pgpass: {d}/pgpass
  authentication:
    replication:
      username: replicator
      password: ha-test-replication
    superuser:
      username: postgres
      password: ha-test-superuser
    rewind:
      username: rewinder
      password: ha-test-rewind
  parameters:
    unix_socket_directories: {d}
    shared_buffers: 32MB
    max_connections: 80
"""

    def start(self):
        os.makedirs(os.path.join(self.root, "etcd"), exist_ok=True)
        self.etcd = self.procs.start("etcd", [
            "etcd", "--name", "ha-etcd", "--data-dir", os.path.join(self.root, "etcd"),
            "--listen-client-urls", f"http://127.0.0.1:{self.etcd_port}",
            "--advertise-client-urls", f"http://127.0.0.1:{self.etcd_port}",
            "--listen-peer-urls", f"http://127.0.0.1:{self.etcd_peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{self.etcd_peer}",
            "--initial-cluster", f"ha-etcd=http://127.0.0.1:{self.etcd_peer}",
            "--log-level", "warn"])
        wait_for(lambda: port_open(self.etcd_port), 30, "etcd")
        for i, name in enumerate(self.names):
            d = os.path.join(self.root, name)
            os.makedirs(d, exist_ok=True)
            with open(os.path.join(d, "patroni.yml"), "w") as f:
                f.write(self.config(i))
            subprocess.run(["chown", "-R", "postgres:postgres", d], check=True)
            os.chmod(d, 0o700)
            self.start_node(name)
            if i == 0:
                wait_for(lambda: self.leader() is not None, 90, "the first leader")
        self.wait_healthy(180)

    def start_node(self, name):
        cfg = os.path.join(self.root, name, "patroni.yml")
        self.patroni[name] = self.procs.start(f"patroni-{name}", ["patroni", cfg], user="postgres")

    def stop_node(self, name):
        self.procs.stop(f"patroni-{name}", self.patroni.pop(name), signal.SIGTERM, wait=60)

    def members(self):
        cfg = os.path.join(self.root, "node1", "patroni.yml")
        r = subprocess.run(["patronictl", "-c", cfg, "list", "-f", "json"],
                           capture_output=True, text=True, timeout=20)
        if r.returncode != 0:
            return []
        try:
            return json.loads(r.stdout or "[]")
        except json.JSONDecodeError:
            return []

    def leader(self):
        for m in self.members():
            if m.get("Role") == "Leader" and m.get("State") == "running":
                return m["Member"]
        return None

    def sync_standby(self):
        for m in self.members():
            if m.get("Role") == "Sync Standby":
                return m["Member"]
        return None

    def healthy(self):
        ms = self.members()
        roles = sorted(m.get("Role", "") for m in ms)
        ok_state = all(m.get("State") in ("running", "streaming") for m in ms)
        lag_ok = all(m.get("Lag in MB", 0) in (0, "", None) for m in ms
                     if m.get("Role") != "Leader")
        return len(ms) == 3 and ok_state and lag_ok and roles.count("Leader") == 1 \
            and roles.count("Sync Standby") == 1

    def wait_healthy(self, timeout):
        wait_for(self.healthy, timeout, "a healthy cluster (leader, sync standby, replica)")

    def port_of(self, name):
        return self.pg_ports[self.names.index(name)]

    def url(self, db, read_write=True):
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.pg_ports)
        attrs = "?target_session_attrs=read-write" if read_write else ""
        return f"postgres://postgres@{hosts}/{db}{attrs}"

    def psql(self, db, sql, timeout=60):
        """Runs sql on the primary; returns rows of '|'-separated fields."""
        conninfo = (f"host={','.join('127.0.0.1' for _ in self.pg_ports)} "
                    f"port={','.join(map(str, self.pg_ports))} user=postgres dbname={db} "
                    "target_session_attrs=read-write connect_timeout=3")
        r = subprocess.run([os.path.join(PG_BIN, "psql"), "-XAtq", "-v", "ON_ERROR_STOP=1",
                            conninfo, "-c", sql], capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"psql failed: {r.stderr.strip()}")
        return [line.split("|") for line in r.stdout.splitlines() if line]

    def postmaster_pid(self, name):
        with open(os.path.join(self.root, name, "data", "postmaster.pid")) as f:
            return int(f.readline())

    def patronictl(self, *args):
        cfg = os.path.join(self.root, "node1", "patroni.yml")
        return subprocess.run(["patronictl", "-c", cfg, *args], capture_output=True, text=True,
                              timeout=120)


def port_open(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def wait_for(cond, timeout, what):
    until = time.time() + timeout
    while time.time() < until:
        try:
            if cond():
                return
        except Exception:  # noqa: BLE001 - a probe that fails is "not yet"
            pass
        time.sleep(0.5)
    raise RuntimeError(f"timed out after {timeout} s waiting for {what}")


# ---------------------------------------------------------------- the load


class Load:
    """16 clients registering, paying and erasing; every attempt is recorded."""

    def __init__(self, port, keys):
        self.port, self.keys = port, keys
        self.lock = threading.Lock()
        self.attempts = []  # (time answered, ok, status)
        self.acked = {"registrations": [], "payments": [], "erasures": []}
        self.bad = []  # 5xx other than 503 STORE_UNAVAILABLE + Retry-After, no answer
        self.unavailable = 0
        self.refused = {}
        self.gave_up = 0
        self.exists_on_retry = []  # amounts of payments answered 409 PAYMENT_EXISTS
        # Keyed writes answered 409 *_EXISTS: committed by an earlier attempt whose
        # answer was lost, so the retry must get the first answer (ADR 0017,
        # amendment); each one is a failure.
        self.unfaithful = []
        self.run = threading.Event()
        self.stop = threading.Event()
        self.idle = [threading.Event() for _ in range(CLIENTS)]
        self.threads = [threading.Thread(target=self.client, args=(i,), daemon=True)
                        for i in range(CLIENTS)]

    def start(self):
        self.run.set()
        for t in self.threads:
            t.start()

    def pause(self):
        """Returns once every client has its last write answered and waits."""
        self.run.clear()
        for e in self.idle:
            e.wait()

    def resume(self):
        for e in self.idle:
            e.clear()
        self.run.set()

    def finish(self):
        self.stop.set()
        self.run.set()
        for t in self.threads:
            t.join(GIVE_UP + 30)

    def request(self, conn, method, path, token, key=None, body=None):
        headers = {"Authorization": f"Bearer {token}"}
        if key:
            headers["Idempotency-Key"] = key
        data = None
        if body is not None:
            data = json.dumps(body)
            headers["Content-Type"] = "application/json"
        conn.request(method, path, body=data, headers=headers)
        r = conn.getresponse()
        text = r.read()
        try:
            payload = json.loads(text) if text else None
        except json.JSONDecodeError:
            payload = None
        return r.status, r.getheader("Retry-After"), payload

    def write(self, i, method, path, token, key=None, body=None):
        """Sends one write until it has a final answer (anything but a 503)."""
        started = time.time()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            while True:
                try:
                    status, retry_after, v = self.request(conn, method, path, token, key, body)
                    problem = None
                except (OSError, http.client.HTTPException) as e:
                    status, retry_after, v = 0, None, None
                    problem = f"{method} {path.split('/')[2]}: no answer: {type(e).__name__}"
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
                now = time.time()
                ok = 200 <= status < 300
                with self.lock:
                    self.attempts.append((now, ok, status))
                    if ok or 400 <= status < 500:
                        if not ok:
                            code = (v or {}).get("code", "?")
                            self.refused[f"{status} {code}"] = self.refused.get(f"{status} {code}", 0) + 1
                        return status, v
                    if status == 503 and retry_after and (v or {}).get("code") == "STORE_UNAVAILABLE":
                        self.unavailable += 1
                    else:
                        code = (v or {}).get("code")
                        self.bad.append(problem or f"{method} {path.split('/')[2]}: {status} {code} "
                                                   f"(Retry-After {retry_after})")
                if now - started > GIVE_UP:
                    with self.lock:
                        self.gave_up += 1
                    return None, None
                time.sleep(0.2 + random.random() * 0.2)
        finally:
            conn.close()

    def client(self, i):
        token = self.keys[i % len(self.keys)]
        n = 0
        while not self.stop.is_set():
            if not self.run.is_set():
                self.idle[i].set()
                self.run.wait()
                continue
            n += 1
            profile = {"email": f"ha-{i}-{n}@example.invalid", "password_hash": "argon2id$v=19$ha",
                       "first_name": "Load", "last_name": f"Client{i}",
                       "registration_ip": "192.0.2.10"}
            st, r = self.write(i, "POST", "/v1/customers", token, f"ha-register-{i}-{n}-{RUN}", profile)
            if st == 409 and (r or {}).get("code") == "CUSTOMER_EXISTS":
                with self.lock:
                    self.unfaithful.append("CUSTOMER_EXISTS")
            if st != 201:
                continue
            c = r["customer_id"]
            with self.lock:
                self.acked["registrations"].append((c, r["position"]))
            amount = 100 + (n % 900)
            pay = {"payment_id": str(uuid.uuid4()), "offer_id": "ha-offer",
                   "amount": {"minor": amount, "currency": "EUR"}, "payer_ip": "192.0.2.11"}
            st, r = self.write(i, "POST", f"/v1/customers/{c}/payments", token, f"ha-pay-{i}-{n}-{RUN}", pay)
            if st == 201:
                with self.lock:
                    self.acked["payments"].append((c, r["position"], amount))
            elif st == 409 and (r or {}).get("code") == "PAYMENT_EXISTS":
                # Committed by an earlier attempt whose saved answer was lost with the
                # session: in the log and in revenue, but answered 409, not 201.
                with self.lock:
                    self.exists_on_retry.append(amount)
                    self.unfaithful.append("PAYMENT_EXISTS")
            if n % 2 == 0:
                st, r = self.write(i, "DELETE", f"/v1/customers/{c}", token)
                if st in (200, 202):
                    with self.lock:
                        self.acked["erasures"].append((c, r["event_position"], st))
        self.idle[i].set()


RUN = uuid.uuid4().hex[:8]

# ---------------------------------------------------------------- the ledger


class Ledger:
    def __init__(self, root, procs, binary, cluster):
        self.root, self.procs, self.bin, self.cluster = root, procs, binary, cluster
        self.data = os.path.join(root, "ledger-data")
        self.port = free_ports(1)[0]
        self.url = cluster.url("ledger")
        self.proc = None

    def env(self):
        env = dict(os.environ)
        for k in list(env):
            if k.startswith("LEDGER_"):
                del env[k]
        env["LEDGER_ADMIN_KEY"] = "lka_ha-admin-key-0123456789abcdefghijklmnop"
        env["LEDGER_LOG"] = os.environ.get("HA_LEDGER_LOG", "info")
        return env

    def start(self):
        out = open(os.path.join(self.root, "logs", "ledger-serve.out"), "wb")
        self.proc = self.procs.start("ledger-serve", [
            self.bin, "--data", self.data, "--store", self.url, "serve",
            "--listen", f"127.0.0.1:{self.port}", "--demo", "--demo-customers", "200"],
            env=self.env(), stdout=out)
        path = os.path.join(self.root, "logs", "ledger-serve.out")
        wait_for(lambda: "try: " in open(path).read(), 180, "ledger serve to print its demo keys")
        keys = []
        for line in open(path).read().splitlines():
            words = line.split()
            if " white_label " in f" {line} " and words:
                keys.append(words[-1])
        if not keys:
            raise RuntimeError("no white_label demo API key printed by serve --demo")
        wait_for(lambda: self.ready(), 60, "/readyz")
        return keys

    def ready(self):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            c.request("GET", "/readyz")
            return c.getresponse().status == 200
        finally:
            c.close()

    def command(self, *args, timeout=300):
        return subprocess.run([self.bin, "--data", self.data, "--store", self.url, *args],
                              capture_output=True, text=True, timeout=timeout, env=self.env())

    def stop(self):
        if self.proc:
            self.procs.stop("ledger-serve", self.proc, signal.SIGTERM, wait=60)
            self.proc = None


def revenue(ledger):
    """EUR (net, payment count) from `ledger revenue --json` (read-only, beside serve)."""
    r = ledger.command("revenue", "--json")
    if r.returncode != 0:
        raise RuntimeError(f"ledger revenue failed: {r.stderr.strip()[-400:]}")
    for row in json.loads(r.stdout)["per_currency"]:
        if row["currency"] == "EUR":
            t = row["totals"]
            return int(t["net"]), int(t["payment_count"])
    return 0, 0


# ---------------------------------------------------------------- the rounds


def inject(kind, cluster):
    """Breaks the cluster one way; returns when the fault is over (not healed)."""
    leader = cluster.leader()
    if kind == "crash":
        pid = cluster.postmaster_pid(leader)
        log(f"crash: kill -9 postmaster {pid} of the leader {leader}")
        os.kill(pid, signal.SIGKILL)
    elif kind == "switchover":
        cand = cluster.sync_standby()
        log(f"switchover: {leader} -> {cand}")
        r = cluster.patronictl("switchover", "--leader", leader, "--candidate", cand, "--force")
        if r.returncode != 0 and "no such option" in (r.stderr + r.stdout):
            r = cluster.patronictl("switchover", "--master", leader, "--candidate", cand, "--force")
        if r.returncode != 0:
            raise RuntimeError(f"patronictl switchover failed: {r.stderr.strip()} {r.stdout.strip()}")
    elif kind == "replica":
        sync = cluster.sync_standby()
        log(f"replica: stopping the synchronous standby {sync} for 20 s")
        cluster.stop_node(sync)
        time.sleep(20)
        cluster.start_node(sync)
    elif kind == "dcs":
        pause = TTL + 10
        log(f"dcs: SIGSTOP etcd for {pause} s (ttl {TTL} s)")
        os.kill(cluster.etcd.pid, signal.SIGSTOP)
        try:
            time.sleep(pause)
        finally:
            os.kill(cluster.etcd.pid, signal.SIGCONT)


def downtime(attempts, t0, t1):
    """(write downtime, longest stall) for the attempts answered in [t0, t1).

    With 16 independent clients, "first failed to first succeeded write" is taken per
    outage: the downtime is the longest interval between two consecutive acknowledged
    writes (of any client) during which at least one write failed (0 if none failed).
    The longest stall is the longest interval between acknowledged writes at all, as
    when commits wait for a new synchronous standby instead of failing."""
    window = sorted(a for a in attempts if t0 <= a[0] < t1)
    down, stall, last_ok, failed = 0.0, 0.0, t0, False
    for t, ok, status in window:
        if ok:
            stall = max(stall, t - last_ok)
            if failed:
                down = max(down, t - first_failed)
            last_ok, failed = t, False
        elif not 400 <= status < 500 and not failed:
            failed, first_failed = True, t
    if failed:
        down = float("inf")
    return down, stall


def check(cluster, ledger, load, baseline):
    """The checks after a round (load paused). Returns a dict of problem counts."""
    wait_for(ledger.ready, 120, "/readyz after the round")
    problems = {"lost": 0, "half_done": 0, "audit_failed": 0, "revenue_off": 0}
    log_rows = cluster.psql("ledger", "SELECT position, stream, event_type FROM events")
    at = {int(p): (s, t) for p, s, t in log_rows}
    acked = load.acked

    def present(p, c, kind):
        if at.get(int(p)) != (f"customer-{c}", kind):
            problems["lost"] += 1
            log(f"LOST: acknowledged {kind} of customer {c} at position {p}")

    for c, p in acked["registrations"]:
        present(p, c, "CustomerRegistered")
    for c, p, _ in acked["payments"]:
        present(p, c, "PaymentCaptured")
    for c, p, _ in acked["erasures"]:
        present(p, c, "CustomerAnonymized")

    # Half-done erasures, both ways; the reconciler may still be finishing one.
    half_sql = """SELECT
        (SELECT count(*) FROM events e JOIN ledger_data_keys k
           ON e.stream = 'customer-' || k.customer_id::text
         WHERE e.event_type = 'CustomerAnonymized'),
        (SELECT count(*) FROM ledger_destroyed_keys d WHERE NOT EXISTS (
           SELECT 1 FROM events e WHERE e.stream = 'customer-' || d.customer_id::text
             AND e.event_type = 'CustomerAnonymized'))"""
    half = None
    until = time.time() + 90
    while time.time() < until:
        (a, b), = cluster.psql("ledger", half_sql)
        half = int(a) + int(b)
        if half == 0:
            break
        time.sleep(2)
    problems["half_done"] = half or 0
    if half:
        log(f"HALF-DONE erasures after 90 s: {half}")

    r = ledger.command("audit", "verify", "--json")
    try:
        report = json.loads(r.stdout)
    except json.JSONDecodeError:
        report = {}
    if r.returncode != 0 or report.get("ok") is not True:
        problems["audit_failed"] = 1
        log(f"AUDIT FAILED: exit {r.returncode}: {r.stdout[-600:]} {r.stderr[-600:]}")

    net, count = revenue(ledger)
    paid = sum(a for _, _, a in acked["payments"]) + sum(load.exists_on_retry)
    want = (baseline[0] + paid, baseline[1] + len(acked["payments"]) + len(load.exists_on_retry))
    if (net, count) != want:
        problems["revenue_off"] = 1
        log(f"REVENUE: EUR net {net}, {count} payments; expected {want[0]}, {want[1]}")
    return problems


def bench(ledger, cluster, single_url, bench_args):
    """`ledger bench` (its scratch database on each server) on the cluster, with
    synchronous replication, and on the single server, one after the other."""
    out = {}
    for label, url in (("cluster (sync replication)", cluster.url("postgres")),
                       ("single server", single_url)):
        r = subprocess.run([ledger.bin, "--data", os.path.join(ledger.root, "bench-data"),
                            "--store", url, "bench", *bench_args],
                           capture_output=True, text=True, timeout=1800, env=ledger.env())
        out[label] = (r.returncode, r.stdout.strip(), r.stderr.strip()[-800:])
    return out


def percentile(xs, q):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", required=True)
    ap.add_argument("--ledger", required=True)
    ap.add_argument("--rounds", type=int, default=5,
                    help="rounds of the four failovers (default 5: 20 failovers)")
    ap.add_argument("--short", action="store_true", help="one failover of each kind")
    ap.add_argument("--bench", default="", help="`ledger bench` arguments; empty: no bench")
    ap.add_argument("--single-url", default="",
                    help="the single server for the bench comparison (a maintenance database "
                         "URL; default postgres://postgres@127.0.0.1:5432/postgres)")
    args = ap.parse_args()
    rounds = 1 if args.short else args.rounds
    root = args.dir
    os.makedirs(os.path.join(root, "logs"), exist_ok=True)
    procs = Procs(root)
    started = time.time()

    cluster = Cluster(root, procs)
    log(f"starting etcd :{cluster.etcd_port} and Patroni nodes on PostgreSQL ports {cluster.pg_ports}")
    cluster.start()
    cluster.psql("postgres", "CREATE DATABASE ledger")
    log(f"cluster healthy: leader {cluster.leader()}, synchronous standby {cluster.sync_standby()}")

    ledger = Ledger(root, procs, args.ledger, cluster)
    keys = ledger.start()
    log(f"ledger serve on :{ledger.port} (demo data, {len(keys)} white-label keys)")
    baseline = revenue(ledger)
    load = Load(ledger.port, keys)
    load.start()
    time.sleep(5)

    failovers = []  # (kind, downtime, stall)
    totals = {"lost": 0, "half_done": 0, "audit_failed": 0, "revenue_off": 0}
    ok = True
    for rnd in range(1, rounds + 1):
        for kind in KINDS:
            cluster.wait_healthy(240)
            t0 = time.time()
            inject(kind, cluster)
            # Healed when the cluster is whole again and a write went through since.
            cluster.wait_healthy(300)
            wait_for(lambda: any(a[1] and a[0] > t0 for a in list(load.attempts)[-200:]),
                     120, "an acknowledged write after the fault")
            time.sleep(3)
            load.pause()
            t1 = time.time()
            down, stall = downtime(load.attempts, t0, t1)
            failovers.append((kind, down, stall))
            problems = check(cluster, ledger, load, baseline)
            for k, v in problems.items():
                totals[k] += v
            ok = ok and not any(problems.values())
            with load.lock:
                counts = {k: len(v) for k, v in load.acked.items()}
            log(f"round {rnd} {kind:10s}: write downtime {down:6.2f} s (longest stall "
                f"{stall:6.2f} s); acked {counts}; 503 {load.unavailable}; bad {len(load.bad)}; "
                f"problems {problems}; leader now {cluster.leader()}")
            load.resume()
    load.finish()
    ledger.stop()

    # After a clean stop: the audit once more, and the final counts.
    print()
    print("=" * 78)
    with load.lock:
        acked_total = sum(len(v) for v in load.acked.values())
        print(f"failovers: {len(failovers)} ({rounds} round(s) of {', '.join(KINDS)})")
        print(f"acknowledged writes: {acked_total} ({len(load.acked['registrations'])} registrations, "
              f"{len(load.acked['payments'])} payments, {len(load.acked['erasures'])} erasures, "
              f"{sum(1 for e in load.acked['erasures'] if e[2] == 202)} of them 202)")
        print(f"write attempts: {len(load.attempts)}; 503 STORE_UNAVAILABLE: {load.unavailable}; "
              f"refused 4xx: {load.refused}; given up: {load.gave_up}")
        print(f"acknowledged writes lost: {totals['lost']}; half-done erasures: {totals['half_done']}; "
              f"audit failures: {totals['audit_failed']}; revenue mismatches: {totals['revenue_off']}; "
              f"5xx other than 503 / no answer: {len(load.bad)}; "
              f"retries answered 409 *_EXISTS instead of their first answer: {len(load.unfaithful)}")
        for b in load.bad[:10]:
            print(f"  bad: {b}")
    print(f"write downtime per kind (first failed -> first succeeded write), Patroni ttl={TTL} "
          f"loop_wait={LOOP_WAIT} retry_timeout={RETRY_TIMEOUT}:")
    for kind in KINDS:
        d = [x[1] for x in failovers if x[0] == kind]
        s = [x[2] for x in failovers if x[0] == kind]
        if d:
            print(f"  {kind:10s} n={len(d):2d}  p50 {percentile(d, 0.5):6.2f} s  max {max(d):6.2f} s"
                  f"   | longest stall p50 {percentile(s, 0.5):6.2f} s  max {max(s):6.2f} s")
    alld = [x[1] for x in failovers]
    print(f"  all        n={len(alld):2d}  p50 {percentile(alld, 0.5):6.2f} s  max {max(alld):6.2f} s")

    if args.bench:
        cluster.wait_healthy(240)
        single = args.single_url or "postgres://postgres@127.0.0.1:5432/postgres"
        for label, (rc, out, err) in bench(ledger, cluster, single, args.bench.split()).items():
            print(f"bench on {label} (exit {rc}):")
            print("  " + out.replace("\n", "\n  "))
            if rc != 0:
                print("  " + err)
                ok = False
    bad = totals["lost"] or totals["half_done"] or totals["audit_failed"] or totals["revenue_off"] \
        or load.bad or load.gave_up or load.unfaithful
    print(f"wall time {time.time() - started:.0f} s; result: {'PASS' if ok and not bad else 'FAIL'}")
    return 0 if ok and not bad else 1


if __name__ == "__main__":
    sys.exit(main())
