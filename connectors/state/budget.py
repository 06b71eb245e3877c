"""A rate budget shared by every worker of a run: permits leased in blocks from the ledger's database.

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
import time
from typing import Protocol
from urllib.parse import urlsplit

from connectors.braze.ratelimit import DEFAULT_MARGIN, Clock, Rate, Sleep

log = logging.getLogger(__name__)

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
    """`Budget` (connectors/braze/ratelimit.py) whose permits come from a shared store in blocks."""

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
