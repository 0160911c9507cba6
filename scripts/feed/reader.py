#!/usr/bin/env python3
"""One NDJSON reader of the change feed: pages of GET /v1/events after position 0
until the end, over one kept-alive connection, counting events (lines) and bytes.
Prints one JSON line: events, bytes, seconds, events_per_s.

  scripts/feed/reader.py http://127.0.0.1:18080 TOKEN [LIMIT]
"""
import http.client
import json
import sys
import time
import urllib.parse


def main():
    base, token = sys.argv[1], sys.argv[2]
    limit = int(sys.argv[3]) if len(sys.argv) > 3 else 10000
    u = urllib.parse.urlparse(base)
    conn = http.client.HTTPConnection(u.hostname, u.port)
    headers = {"Authorization": f"Bearer {token}"}
    after, events, size = 0, 0, 0
    started = time.perf_counter()
    while True:
        conn.request("GET", f"/v1/events?after={after}&limit={limit}", headers=headers)
        r = conn.getresponse()
        body = r.read()
        if r.status != 200:
            sys.exit(f"GET /v1/events: {r.status}")
        nxt = int(r.getheader("Ledger-Next-After"))
        n = body.count(b"\n")
        events += n
        size += len(body)
        if n == 0 and nxt == after:
            break
        after = nxt
    secs = time.perf_counter() - started
    print(json.dumps({"events": events, "bytes": size, "seconds": round(secs, 3),
                      "events_per_s": round(events / secs)}))


if __name__ == "__main__":
    main()
