"""One request to a Braze endpoint other than /users/track (user deletes, catalogs), sent through the track
client's pieces: the one retry layer (transient errors only, bounded in attempts and time), a rate limiter
(its budget plus Braze's `X-RateLimit-*` headers and 429 pauses) and the outcome classifier."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import orjson

from connectors.braze.outcomes import BrazeThrottled, BrazeTransientError, classify, classify_exception
from connectors.braze.ratelimit import RateLimiter
from connectors.braze.retries import braze_retrying, with_retries
from connectors.braze.transport import TRANSPORT_ERRORS


@dataclass
class Counts:
    """What sending one request took: requests made, retries, 429s."""

    requests: int = 0
    retries: int = 0
    throttled: int = 0


@dataclass
class _Try:
    failures: int = 0
    started: float = field(default_factory=time.monotonic)


async def send_one(http: httpx.AsyncClient, method: str, url: str, body: bytes | None, headers: dict,
                   limiter: RateLimiter, counts: Counts, *, max_attempts: int, max_seconds: float,
                   stopped: threading.Event, refuse: Callable[[httpx.Response], None] | None = None) -> dict:
    """Send until Braze answers for good; returns the answer's JSON or raises the BrazeError it means.
    `refuse(response)` may raise first (an endpoint's own shape of a refused request)."""
    retrying = braze_retrying(limiter=limiter, max_attempts=max_attempts, max_seconds=max_seconds,
                              clock=time.monotonic, stopped=stopped)

    async def attempt(state: _Try) -> dict:
        await limiter.acquire()
        counts.requests += 1
        counts.retries += counts.requests > 1
        try:
            response = await http.request(method, url, content=body, headers=headers)
        except TRANSPORT_ERRORS as exc:
            state.failures += 1
            raise classify_exception(exc) from None
        limiter.observe(response.status_code, response.headers)
        if refuse is not None:
            refuse(response)
        try:
            classify(response.status_code, response.content, response.headers)
        except BrazeThrottled:
            counts.throttled += 1
            raise
        except BrazeTransientError:
            state.failures += 1
            raise
        return orjson.loads(response.content)

    return await with_retries(retrying, asyncio.sleep, attempt, _Try())
