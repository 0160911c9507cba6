#!/usr/bin/env python3
"""Registers N fresh customers (no subscription: erasable) for the anonymize
benchmark and writes their ids, one per line. Standard library only.

usage: prepare_erasable.py BASE_URL KEY N OUT_FILE
"""
import json
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor

base, key, n, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]


def register(i):
    body = json.dumps({
        "email": f"bench{i}@example.com", "password_hash": "argon2id$bench",
        "first_name": "Bench", "last_name": f"Customer{i}",
    }).encode()
    req = urllib.request.Request(f"{base}/v1/customers", data=body, method="POST", headers={
        "Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.load(r)["customer_id"]


with ThreadPoolExecutor(16) as pool:
    ids = list(pool.map(register, range(n)))
with open(out, "w") as f:
    f.write("\n".join(ids) + "\n")
print(f"registered {len(ids)} erasable customers -> {out}")
