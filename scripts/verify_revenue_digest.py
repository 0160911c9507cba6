#!/usr/bin/env python3
"""Recompute a ledger revenue digest from the revenue CSV, with no ledger code.

The CSV is what `GET /v1/revenue` answers to `Accept: text/csv`, or what
`ledger revenue --format csv` prints. This script rebuilds the canonical form
`ledger-revenue-v1` from it (docs/revenue-digest.md) and prints the lower-case
hex sha256 of those bytes: the digest the ledger reports (the
`Ledger-Revenue-Digest` header, the JSON `digest`, an erasure receipt's revenue
digests for that broadcaster).

    python3 scripts/verify_revenue_digest.py revenue.csv
    python3 scripts/verify_revenue_digest.py --expect DIGEST revenue.csv
    ledger revenue --format csv | python3 scripts/verify_revenue_digest.py -

Exit status: 0 (digest printed, and equal to --expect if given), 1 (digest
differs from --expect), 2 (the input is not a valid revenue CSV).
Python standard library only.
"""

import argparse
import hashlib
import re
import sys

HEADER = ["broadcaster_id", "currency", "exponent", "day", "offer_id",
          "gross_captured", "refunded", "net", "payment_count", "refund_count"]
CANONICAL_HEADER = b"ledger-revenue-v1\n"

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
CURRENCY = re.compile(r"^[A-Z]{3}$")
DAY = re.compile(r"^(-?[0-9]{4,})-([0-9]{2})-([0-9]{2})$")
OFFER = re.compile(r"^[a-z0-9_-]{1,64}$")
INTEGER = re.compile(r"^(0|-?[1-9][0-9]*)$")
COUNT = re.compile(r"^(0|[1-9][0-9]*)$")


class Invalid(Exception):
    pass


def parse_row(n, line):
    fields = line.split(",")
    if len(fields) != len(HEADER):
        raise Invalid(f"line {n}: {len(fields)} fields, expected {len(HEADER)}")
    row = dict(zip(HEADER, fields))
    checks = [("broadcaster_id", UUID), ("currency", CURRENCY), ("day", DAY),
              ("offer_id", OFFER), ("gross_captured", INTEGER), ("refunded", INTEGER),
              ("net", INTEGER), ("payment_count", COUNT), ("refund_count", COUNT)]
    for name, pattern in checks:
        if not pattern.match(row[name]):
            raise Invalid(f"line {n}: invalid {name}")
    if int(row["net"]) != int(row["gross_captured"]) - int(row["refunded"]):
        raise Invalid(f"line {n}: net is not gross_captured - refunded")
    return row


def sort_key(row):
    # RevenueKey order: broadcaster id by its 16 bytes (the same as its lower-case
    # hex text), currency code, day (as a date, so negative years sort first),
    # offer id bytewise.
    year, month, day = DAY.match(row["day"]).groups()
    return (row["broadcaster_id"], row["currency"],
            (int(year), int(month), int(day)), row["offer_id"].encode("ascii"))


def canonical_bytes(text):
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    else:
        raise Invalid("the CSV does not end with a newline")
    if not lines or lines[0] != ",".join(HEADER):
        raise Invalid("the first line is not the revenue CSV header")
    rows = [parse_row(n, line) for n, line in enumerate(lines[1:], start=2)]
    rows.sort(key=sort_key)
    out = bytearray(CANONICAL_HEADER)
    previous = None
    for row in rows:
        key = sort_key(row)
        if key == previous:
            raise Invalid("two rows for the same broadcaster, currency, day and offer")
        previous = key
        out += "\t".join([row["broadcaster_id"], row["currency"], row["day"],
                          row["offer_id"], row["gross_captured"], row["refunded"],
                          row["net"], row["payment_count"], row["refund_count"]]
                         ).encode("ascii") + b"\n"
    return bytes(out)


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("csv", help="the revenue CSV file, or - for stdin")
    parser.add_argument("--expect", help="the digest the ledger reported")
    parser.add_argument("--canonical", action="store_true",
                        help="print the canonical form instead of its digest")
    args = parser.parse_args(argv)
    try:
        if args.csv == "-":
            data = sys.stdin.buffer.read()
        else:
            with open(args.csv, "rb") as f:
                data = f.read()
        canonical = canonical_bytes(data.decode("ascii"))
    except (Invalid, UnicodeDecodeError) as e:
        print(f"invalid revenue CSV: {e}", file=sys.stderr)
        return 2
    if args.canonical:
        sys.stdout.buffer.write(canonical)
        return 0
    digest = hashlib.sha256(canonical).hexdigest()
    print(digest)
    if args.expect is not None and args.expect != digest:
        print(f"digest differs: expected {args.expect}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
