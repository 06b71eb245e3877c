"""Braze unreachable: while retries fail, a WARNING names the error at most every 30 s (virtual time: the
test never sleeps), so a person watching the logs knows why the progress line stands still."""

from __future__ import annotations

import logging
from itertools import pairwise

import httpx

from connectors.braze.client import FAILING_WARN_S
from tests.test_client import FakeBraze, body, one
from tests.test_ratelimit import VirtualTime


def test_failing_retries_warn_naming_the_error_at_most_every_30_s(caplog):
    vt = VirtualTime()
    fake = FakeBraze(vt, script=[httpx.ConnectError("refused")] * 9)
    seen: list[tuple[float, str]] = []

    class Record(logging.Handler):
        def emit(self, record):
            seen.append((vt.monotonic(), record.getMessage()))

    handler = Record(logging.WARNING)
    logging.getLogger("connectors.braze.client").addHandler(handler)
    try:
        result = one(fake, body(attributes=1), max_attempts=10, max_retry_seconds=10_000, backoff=8.0)
    finally:
        logging.getLogger("connectors.braze.client").removeHandler(handler)
    assert result.status == "acknowledged" and result.retries == 9  # the tenth attempt got through
    warnings = [(t, m) for t, m in seen if m.startswith("Braze is not answering")]
    assert len(warnings) >= 2, seen
    assert all("connect" in m.lower() and "failed attempts" in m for _, m in warnings)
    times = [t for t, _ in warnings]
    assert all(b - a >= FAILING_WARN_S for a, b in pairwise(times)), times
    assert sum(int(m.split("; ")[1].split()[0]) for _, m in warnings) <= 9  # each failure counted once
