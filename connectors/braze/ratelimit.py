"""The rate limit, in one place: the client-side limiter for Braze (the configured limit, Braze's
X-RateLimit-* headers and 429 pauses) and the budgets it draws its permits from.

One `RateLimiter` is shared by every request of a run (`RateLimiter.acquire` is where the rate limit is
applied). It draws permits from a `Budget`: the local `SlidingWindowBudget`, or the `LeasedBudget` every load
uses, shared by all workers of a run through the ledger (below). Override point: any object with the
`Budget` methods.

## The leased budget
A rate budget shared by every worker of a run: permits leased in blocks from the ledger's database.

Braze counts requests in fixed windows aligned on the epoch (3,000 per 3 s windows starting at multiples of
3 s). The budget counts in the same windows, over all workers, in one row of the shared database: a worker
leases a block of permits (one atomic upsert, `LedgerBase.lease`) and spends it locally, so the database is
touched once per block, not once per request. Together the workers never take more than `cap` permits of a
window, where `cap` keeps the 3 % margin of `SlidingWindowBudget` for requests bunching up in transit.

Permits are spent only inside their window, away from its edges by `guard` seconds, so that clock offsets
between workers and Braze and request latency shorter than the guard cannot move a request into the
neighbouring server window. Permits still held when the window ends are dropped: a worker never carries
them over, which can only waste budget, never exceed it.

A budget row belongs to one limit: its window numbers count periods of that limit, so a run with another
limit (backfill at 40/1s, then sync at 3000/3s) uses a row of its own instead of waiting for window numbers
of another unit. Every wait is bounded: a row further ahead than a clock offset explains stops the run.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Protocol, runtime_checkable
from urllib.parse import urlsplit

import httpx

log = logging.getLogger(__name__)

# Share of the configured limit we allow ourselves. Sliding windows already keep every server window at or
# below the cap; the 3 % left over absorbs requests bunching up in transit (at Braze's 1,000 req/s,
# 90 requests ≈ 90 ms of latency jitter) and leaves ≥ 95 % of the limit usable.
DEFAULT_MARGIN = 0.97
# A `Reset` header above this is a UTC epoch, otherwise seconds remaining (braze-api.md, "Rate limits").
EPOCH_THRESHOLD = 1e9
# Answers whose Reset differs by less than this describe the same server window (Reset has 1 s granularity).
SAME_WINDOW = 0.5
# After a 429 every sender waits at least this long, even if the headers say "now": no hammering.
MIN_PAUSE = 1.0
# Slack added to a server-announced resume time, for clock offset between us and Braze.
RESUME_SLACK = 0.05

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*([a-z]*)\s*$", re.IGNORECASE)
_UNITS = {
    "": 1.0, "s": 1.0, "sec": 1.0, "secs": 1.0, "second": 1.0, "seconds": 1.0,
    "m": 60.0, "min": 60.0, "mins": 60.0, "minute": 60.0, "minutes": 60.0,
    "h": 3600.0, "hr": 3600.0, "hour": 3600.0, "hours": 3600.0,
}


@dataclass(frozen=True, slots=True)
class Rate:
    """At most `requests` requests per `seconds`."""

    requests: int
    seconds: float

    def __post_init__(self) -> None:
        if self.requests < 1 or not self.seconds > 0:
            raise ValueError(f"rate needs at least 1 request per a positive number of seconds, got {self}")

    def __str__(self) -> str:
        return f"{self.requests}/{self.seconds:g}s"


def parse_rate(text: str) -> Rate:
    """Parse `3000/3s`, `50000/1m`, `250/60s`, `100/s`, `20000/1h` into a Rate."""
    match = _RATE.match(text or "")
    unit = match.group(3).lower() if match else ""
    if not match or unit not in _UNITS or (match.group(2) is None and not unit):
        raise ValueError(f"rate limit {text!r} is not REQUESTS/PERIOD, e.g. '3000/3s', '50000/1m', '250/60s'")
    amount = float(match.group(2)) if match.group(2) is not None else 1.0
    return Rate(int(match.group(1)), amount * _UNITS[unit])


@runtime_checkable
class Budget(Protocol):
    """Grants permission to send. `acquire(n)` returns when n requests may start now."""

    async def acquire(self, n: int = 1) -> None: ...

    def lower_limit(self, requests: int) -> None:
        """Braze announced a lower limit than configured: never exceed it from now on."""


class SlidingWindowBudget:
    """Local budget: at most `cap` permits in *any* interval of `rate.seconds` (a sliding log of grants).

    A sliding window, not a fixed one: when every interval of W seconds holds at most `cap` sends, so does
    every fixed window of W seconds the server counts in, whatever its alignment (Braze's 3 s windows start
    at epoch multiples of 3) and whatever the offset between our clock and Braze's.
    """

    def __init__(
        self, rate: Rate, *, margin: float = DEFAULT_MARGIN, clock: Clock | None = None, sleep: Sleep | None = None
    ) -> None:
        if not 0 < margin <= 1:
            raise ValueError(f"margin must be in (0, 1], got {margin}")
        self.window = rate.seconds
        self.margin = margin
        self.cap = max(1, math.floor(rate.requests * margin))
        self._clock = clock or time.monotonic
        self._sleep = sleep or asyncio.sleep
        self._granted: deque[float] = deque(maxlen=self.cap)
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None

    async def acquire(self, n: int = 1) -> None:
        """Wait until n more permits fit in the window; waiters are served in arrival order."""
        async with self._loop_lock():
            for _ in range(n):
                await self._one()

    def lower_limit(self, requests: int) -> None:
        """Shrink the cap (never grow it: the configured limit is the ceiling)."""
        cap = max(1, math.floor(requests * self.margin))
        if cap < self.cap:
            self.cap = cap
            self._granted = deque(self._granted, maxlen=cap)

    async def _one(self) -> None:
        """Take one permit: the cap-th most recent grant must be at least one window old."""
        while len(self._granted) >= self.cap:
            wait = self._granted[0] + self.window - self._clock()
            if wait <= 0:
                break
            await self._sleep(wait)
        self._granted.append(self._clock())

    def _loop_lock(self) -> asyncio.Lock:
        """The FIFO lock of the running loop (a sync caller runs each load in a fresh loop)."""
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        return self._lock


class RateLimiter:
    """Budget permits plus Braze's view: `X-RateLimit-Remaining`/`Reset` and 429 pauses for all senders."""

    def __init__(
        self,
        rate: Rate,
        *,
        budget: Budget | None = None,
        margin: float = DEFAULT_MARGIN,
        clock: Clock | None = None,
        wall_clock: Clock | None = None,
        sleep: Sleep | None = None,
        max_pause: float = 3600.0,
    ) -> None:
        self.rate = rate
        self._clock = clock or time.monotonic
        self._wall = wall_clock or time.time
        self._sleep = sleep or asyncio.sleep
        self.budget = budget or SlidingWindowBudget(rate, margin=margin, clock=self._clock, sleep=self._sleep)
        self.max_pause = max_pause
        self.pauses = 0
        self._paused_until = -math.inf
        self._reset_at = -math.inf
        self._remaining: float | None = None
        self._warned_limit = False

    async def acquire(self) -> None:
        """Wait for Braze's window and a budget permit; the caller sends right after."""
        await self._wait_for_server()
        await self.budget.acquire(1)
        await self._wait_for_server()
        if self._remaining is not None:
            self._remaining -= 1

    def pause_remaining(self) -> float:
        """Seconds until senders may resume after a 429 (0 when not paused)."""
        return max(0.0, self._paused_until - self._clock())

    def observe(self, status: int, headers: Mapping[str, str]) -> float:
        """Learn from one answer's headers; on 429 pause every sender. Returns the pause in seconds."""
        found = _lower(headers)
        now = self._clock()
        self._check_limit(_number(found.get("x-ratelimit-limit")))
        reset_at = self._reset_time(found.get("x-ratelimit-reset"), now)
        remaining = _number(found.get("x-ratelimit-remaining"))
        if remaining is not None and reset_at is not None:
            self._track(remaining, reset_at)
        if status != 429:
            return 0.0
        return self._pause(now, self._retry_after(found, now, reset_at))

    async def _wait_for_server(self) -> None:
        while (wait := self._server_wait()) > 0:
            await self._sleep(wait)

    def _server_wait(self) -> float:
        """Seconds to wait for a 429 pause or for an exhausted server window to reset."""
        now = self._clock()
        wait = self._paused_until - now
        if self._remaining is not None and self._remaining <= 0:
            wait = max(wait, self._reset_at + RESUME_SLACK - now)
        return wait

    def _check_limit(self, limit: float | None) -> None:
        """A lower X-RateLimit-Limit than configured lowers our cap (conservative: it names no window)."""
        if limit is None or limit >= self.rate.requests or limit < 1:
            return
        self.budget.lower_limit(int(limit))
        if not self._warned_limit:
            self._warned_limit = True
            log.warning("Braze reports a limit of %d requests, below the configured %s; using it", limit, self.rate)

    def _track(self, remaining: float, reset_at: float) -> None:
        """Keep the lowest Remaining seen for the current server window (answers arrive out of order)."""
        if reset_at > self._reset_at + SAME_WINDOW:
            self._reset_at, self._remaining = reset_at, remaining
        elif reset_at >= self._reset_at - SAME_WINDOW:
            self._remaining = remaining if self._remaining is None else min(self._remaining, remaining)

    def _reset_time(self, value: str | None, now: float) -> float | None:
        """Monotonic time of the server window's reset: Reset is an epoch above 10^9, else seconds left."""
        seconds = _number(value)
        if seconds is None:
            return None
        if seconds > EPOCH_THRESHOLD:
            seconds -= self._wall()
        return now + max(0.0, seconds)

    def _retry_after(self, found: Mapping[str, str], now: float, reset_at: float | None) -> float:
        """Seconds to wait after a 429: X-Ratelimit-Retry-After, Retry-After, Reset, else one window."""
        for name in ("x-ratelimit-retry-after", "retry-after"):
            seconds = _delay(found.get(name), self._wall)
            if seconds is not None:
                return seconds
        if reset_at is not None:
            return reset_at - now
        return self.rate.seconds

    def _pause(self, now: float, seconds: float) -> float:
        """Pause all senders; never shorter than MIN_PAUSE, never longer than max_pause."""
        seconds = min(max(seconds + RESUME_SLACK, MIN_PAUSE), self.max_pause)
        self._paused_until = max(self._paused_until, now + seconds)
        self.pauses += 1
        return self._paused_until - now


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    """Headers keyed by lower-case name (Braze sends them lower-case over HTTP/2, mixed over HTTP/1.1)."""
    if isinstance(headers, httpx.Headers):
        return dict(headers.multi_items())
    return {str(key).lower(): value for key, value in headers.items()}


def _number(value: str | None) -> float | None:
    """A header's numeric value, or None when absent or malformed."""
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _delay(value: str | None, wall: Clock) -> float | None:
    """A Retry-After value in seconds: delta-seconds, an epoch above 10^9, or an HTTP date."""
    seconds = _number(value)
    if seconds is not None:
        return seconds - wall() if seconds > EPOCH_THRESHOLD else seconds
    if not value:
        return None
    try:
        return parsedate_to_datetime(value).timestamp() - wall()
    except (TypeError, ValueError, IndexError):
        return None

# Permits asked for per lease: large enough that leasing costs little (one database round trip per block),
# small enough that the permits a worker holds at a window's end, and loses, stay a small share of the cap.
DEFAULT_BLOCK = 100
# A block is at most this share of the cap, so that even under tight limits several workers get some.
MAX_BLOCK_SHARE = 0.25
# Edge guard: clock offset plus latency we absorb without spilling into a neighbouring window (NTP keeps
# clocks within a few ms; a request leaves the client within ms of taking its permit).
MAX_GUARD = 0.05
GUARD_SHARE = 0.05
# Edges are compared with this tolerance: an epoch time in a double is only exact to ~0.2 µs.
EPSILON = 1e-6
# A shared row may be ahead of this worker's window by a clock offset between machines; more than this is
# not an offset but a damaged row or a clock far off, and waiting for it would never end.
MAX_AHEAD_SECONDS = 60.0


class RateBudgetError(Exception):
    """The shared budget cannot grant permits within a bounded wait; the message says what to fix."""


class LeaseStore(Protocol):
    """Where permits come from: `LedgerBase.lease` (SQLite or PostgreSQL)."""

    def lease(self, key: str, window: int, cap: int, n: int) -> tuple[int, int]: ...


def budget_key(endpoint: str, path: str = "/users/track") -> str:
    """The name the limit is shared under: the endpoint and host it applies to (never the API key)."""
    parts = urlsplit(endpoint)
    host = parts.hostname or endpoint
    return f"{path}@{host}" + (f":{parts.port}" if parts.port else "")


class LeasedBudget:
    """`Budget` whose permits come from a shared store in blocks."""

    def __init__(
        self, store: LeaseStore, rate: Rate, *, key: str, margin: float = DEFAULT_MARGIN,
        block: int = DEFAULT_BLOCK, guard: float | None = None, clock: Clock | None = None,
        sleep: Sleep | None = None, in_thread: bool = True,
    ) -> None:
        if not 0 < margin <= 1:
            raise ValueError(f"margin must be in (0, 1], got {margin}")
        self.store = store
        self.key = f"{key} {rate}"  # one row per limit: window numbers are in units of its period
        self.period = rate.seconds
        self.margin = margin
        self.cap = max(1, math.floor(rate.requests * margin))
        self.block = max(1, min(block, math.floor(self.cap * MAX_BLOCK_SHARE)))
        self.guard = min(MAX_GUARD, self.period * GUARD_SHARE) if guard is None else guard
        if not 0 <= self.guard < self.period / 2:
            raise ValueError(f"guard must be in [0, {self.period / 2:g}) seconds, got {self.guard}")
        self._clock = clock or time.time
        self._sleep = sleep or asyncio.sleep
        self._in_thread = in_thread
        self._window: int | None = None
        self._held = 0
        self.leases = 0
        self.lease_seconds = 0.0
        self.leased = 0
        self.dropped = 0
        self._warned_clock = False
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"LeasedBudget(key={self.key!r}, cap={self.cap}/{self.period:g}s, block={self.block})"

    async def acquire(self, n: int = 1) -> None:
        """Return when n permits of the current window are ours; waiters are served in arrival order."""
        async with self._loop_lock():
            while True:
                window, wait = self._usable_window()
                if wait > 0:
                    await self._sleep(wait)
                    continue
                if window != self._window:
                    self.dropped += self._held
                    self._window, self._held = window, 0
                if self._held >= n:
                    self._held -= n
                    return
                granted = await self._lease(window, max(self.block, n - self._held))
                self._held += granted
                if self._held < n:
                    # The window is spent, by us and the others: wait for the next one.
                    await self._sleep(self._next_window_in())

    def lower_limit(self, requests: int) -> None:
        """Braze announced a lower limit: ask for no more than that from now on (the row keeps the lowest)."""
        cap = max(1, math.floor(requests * self.margin))
        if cap < self.cap:
            self.cap = cap
            self.block = max(1, min(self.block, math.floor(cap * MAX_BLOCK_SHARE)))
            self._held = min(self._held, cap)

    @property
    def lease_cost(self) -> float:
        """Mean seconds per lease (one database round trip)."""
        return self.lease_seconds / self.leases if self.leases else 0.0

    def _usable_window(self) -> tuple[int, float]:
        """(window now, seconds to wait until permits may be spent): none within `guard` of an edge."""
        now = self._clock()
        window = math.floor(now / self.period)
        offset = now - window * self.period
        if offset < self.guard - EPSILON:
            return window, self.guard - offset
        if offset > self.period - self.guard + EPSILON:
            return window, self.period - offset + self.guard
        return window, 0.0

    def _next_window_in(self) -> float:
        now = self._clock()
        return (math.floor(now / self.period) + 1) * self.period + self.guard - now

    async def _lease(self, window: int, n: int) -> int:
        started = time.perf_counter()
        if self._in_thread:
            granted, current = await asyncio.to_thread(self.store.lease, self.key, window, self.cap, n)
        else:
            granted, current = self.store.lease(self.key, window, self.cap, n)
        self.lease_seconds += time.perf_counter() - started
        self.leases += 1
        self.leased += granted
        if (current - window) * self.period > MAX_AHEAD_SECONDS:
            raise RateBudgetError(
                f"the shared rate budget {self.key!r} is {(current - window) * self.period:.0f} s ahead of this "
                "machine's clock: set the clock right (NTP) on every worker, or remove its row from the "
                "ledger's budget table; nothing was sent with it"
            )
        if current > window and not self._warned_clock:
            # Safe (this worker gets nothing, so nothing exceeds the cap) but slow: it waits for the others.
            self._warned_clock = True
            log.warning("the shared rate budget is %d window(s) ahead of this worker's clock: a worker's clock "
                        "is off (keep every worker on NTP); this worker waits", current - window)
        return granted

    def _loop_lock(self) -> asyncio.Lock:
        """The FIFO lock of the running loop (a sync caller runs each load in a fresh loop)."""
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        return self._lock
