"""Server-side rate limits with Braze's `X-RateLimit-*` headers.

General policy (braze-api.md "Rate limits"): a fixed window, 3,000 requests per 3 s by default;
`X-RateLimit-Reset` is the UTC epoch second at which the window ends. MAU-contract policy: an
hourly limit plus a burst limit, both must have room; `Reset` is *seconds remaining*, and a 429
also carries `X-Ratelimit-Retry-After` (seconds).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from braze_sandbox.config import Rate

Headers = list[tuple[bytes, bytes]]


class FixedWindow:
    """Windows aligned on multiples of the period since the epoch, like a wall-clock minute."""

    def __init__(self, rate: Rate) -> None:
        self.rate = rate
        self.start = 0.0
        self.count = 0

    def _roll(self, now: float) -> None:
        start = math.floor(now / self.rate.period) * self.rate.period
        if start != self.start:
            self.start, self.count = start, 0

    def remaining(self, now: float) -> int:
        self._roll(now)
        return max(0, self.rate.limit - self.count)

    def ends_at(self, now: float) -> float:
        self._roll(now)
        return self.start + self.rate.period

    def take(self) -> None:
        self.count += 1


class Limiter:
    """The general policy: one fixed window, `Reset` as an epoch."""

    def __init__(self, rate: Rate, clock: Callable[[], float] = time.time) -> None:
        self.window = FixedWindow(rate)
        self.clock = clock

    def admit(self, consume: bool = True) -> tuple[bool, Headers]:
        """(allowed, headers); a refused request does not use up the budget."""
        now = self.clock()
        allowed = self.window.remaining(now) > 0
        if allowed and consume:
            self.window.take()
        return allowed, self.headers(now)

    def headers(self, now: float, exhausted: bool = False) -> Headers:
        """The three headers as they stand after this request."""
        remaining = 0 if exhausted else self.window.remaining(now)
        return [
            (b"X-RateLimit-Limit", str(self.window.rate.limit).encode()),
            (b"X-RateLimit-Remaining", str(remaining).encode()),
            (b"X-RateLimit-Reset", str(math.ceil(self.window.ends_at(now))).encode()),
        ]

    def storm_headers(self) -> Headers:
        """Headers of a 429 forced by a fault: the budget shown as spent."""
        return self.headers(self.clock(), exhausted=True)


class MauLimiter(Limiter):
    """The MAU-contract policy: hourly and burst windows; the tighter one is reported."""

    def __init__(self, hourly: Rate, burst: Rate, clock: Callable[[], float] = time.time) -> None:
        self.windows = (FixedWindow(hourly), FixedWindow(burst))
        self.clock = clock

    def admit(self, consume: bool = True) -> tuple[bool, Headers]:
        now = self.clock()
        allowed = all(w.remaining(now) > 0 for w in self.windows)
        if allowed and consume:
            for window in self.windows:
                window.take()
        return allowed, self.headers(now, refused=not allowed)

    def headers(self, now: float, exhausted: bool = False, refused: bool = False) -> Headers:
        window = min(self.windows, key=lambda w: (w.remaining(now), w.ends_at(now)))
        remaining = 0 if exhausted else window.remaining(now)
        seconds_left = str(max(1, math.ceil(window.ends_at(now) - now))).encode()
        headers = [
            (b"X-RateLimit-Limit", str(window.rate.limit).encode()),
            (b"X-RateLimit-Remaining", str(remaining).encode()),
            (b"X-RateLimit-Reset", seconds_left),
        ]
        if refused or exhausted:
            headers.append((b"X-Ratelimit-Retry-After", seconds_left))
        return headers
