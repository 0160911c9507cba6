"""Schemathesis hooks for scripts/schemathesis.sh.

An Idempotency-Key names one logical request: a client sends a fresh value per
request and the same value only on a retry of the same request. A fuzzer that
draws keys from a small space ("0", "a", ...) reuses them across different
requests, and the server answers 422 IDEMPOTENCY_KEY_REUSED, exactly as documented.
So, in a request meant to be accepted, a valid key (1 to 255 visible ASCII
characters) is replaced by a fresh UUID before the call; an invalid one is left
as it is, so that its rejection (400 INVALID_IDEMPOTENCY_KEY) is still tested. The 422 and 409 answers themselves
are tested by crates/api/tests/api.rs.
"""

import re
import uuid

import schemathesis
from hypothesis.internal import lambda_sources

# Python 3.11.7 (Debian's) has a parser bug (CPython gh-106905, fixed in 3.11.8):
# parsing a large module can raise "SystemError: AST constructor recursion depth
# mismatch". Hypothesis parses source files only to print a filter's lambda in a
# strategy's repr, so a failure there is answered with a placeholder instead of
# aborting the operation's tests.
_lambda_description = lambda_sources.lambda_description


def _safe_lambda_description(f):
    try:
        return _lambda_description(f)
    except SystemError:
        return "lambda: <source unavailable>"


lambda_sources.lambda_description = _safe_lambda_description

_VALID = re.compile(r"^[!-~]{1,255}$")


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    # GET /v1/events?follow=true is a stream that lasts until the client hangs up
    # (Server-Sent Events); a request/response fuzzer would only time out on it. The
    # stream is tested by crates/api/tests/feed; here the page form is fuzzed.
    if case.query and str(case.query.get("follow", "")).lower() == "true":
        case.query["follow"] = "false"
    # A negative case (one that must be rejected, e.g. without Authorization) is
    # left alone: editing it would make Schemathesis revalidate it as positive and
    # put back the header it had removed; any rejection, 422 included, is right.
    if case.meta is not None and case.meta.generation.mode.is_negative:
        return
    if not case.headers:
        return
    for name in list(case.headers):
        if name.lower() == "idempotency-key" and _VALID.match(str(case.headers[name])):
            case.headers[name] = str(uuid.uuid4())
