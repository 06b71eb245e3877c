"""An httpx transport that records the send time and status of every request passing through it.

Braze counts requests per fixed window aligned on the epoch (3 s by default); grouping the recorded send
times the same way shows how full each window was and how many requests it refused.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter

import httpx


class CountingTransport(httpx.AsyncBaseTransport):
    """Wraps a transport; `sent` holds (epoch seconds, status) per request and `latency` the seconds until
    the answer's headers, in answer order."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.sent: list[tuple[float, int]] = []
        self.latency: list[float] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        started = time.time()
        response = await self.inner.handle_async_request(request)
        self.sent.append((started, response.status_code))
        self.latency.append(time.time() - started)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def window_fill(sent: list[tuple[float, int]], limit: int, seconds: float) -> dict:
    """Requests Braze would count per epoch-aligned window (first and last, partial, left out) as a share
    of `limit`, and the share of requests answered 429."""
    if not sent:
        return {"windows": 0, "mean": None, "min": None, "median": None, "max": None, "throttled_share": None}
    windows = Counter(int(t // seconds) for t, _ in sent)
    full = [n for w, n in sorted(windows.items()) if min(windows) < w < max(windows)]
    throttled = sum(1 for _, status in sent if status == 429)
    shares = [n / limit for n in full]
    return {
        "windows": len(full),
        "mean": statistics.fmean(shares) if shares else None,
        "min": min(shares) if shares else None,
        "median": statistics.median(shares) if shares else None,
        "max": max(shares) if shares else None,
        "throttled_share": throttled / len(sent),
        "requests": len(sent),
        "throttled": throttled,
    }
