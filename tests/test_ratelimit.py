"""The client-side rate limiter, on virtual time: parsing, windows under concurrency, headers, 429 pauses."""

from __future__ import annotations

import asyncio
import random
import selectors
from collections import Counter
from email.utils import formatdate

import pytest

from connectors.braze.ratelimit import (
    MIN_PAUSE,
    Budget,
    Rate,
    RateLimiter,
    SlidingWindowBudget,
    parse_rate,
)


class VirtualTime:
    """Time for an asyncio loop that jumps to the next timer instead of waiting: tests never sleep."""

    # Not a multiple of 3: Braze's windows (epoch multiples of 3 s) are not aligned with our start.
    EPOCH0 = 1_700_000_000.4

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.EPOCH0 + self.now

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def run(self, coro):
        with asyncio.Runner(loop_factory=lambda: _VirtualLoop(self)) as runner:
            return runner.run(coro)


class _VirtualSelector(selectors.DefaultSelector):
    def __init__(self, time: VirtualTime) -> None:
        super().__init__()
        self._time = time

    def select(self, timeout=None):
        ready = super().select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:
            raise RuntimeError("virtual loop would block forever: nothing scheduled")
        self._time.now += timeout
        return ready


class _VirtualLoop(asyncio.SelectorEventLoop):
    def __init__(self, time: VirtualTime) -> None:
        super().__init__(_VirtualSelector(time))
        self._virtual = time

    def time(self) -> float:
        return self._virtual.now


def limiter_on(vt: VirtualTime, rate: str = "3000/3s", **kwargs) -> RateLimiter:
    return RateLimiter(parse_rate(rate), clock=vt.monotonic, wall_clock=vt.wall, sleep=vt.sleep, **kwargs)


def max_in_any_window(times: list[float], window: float) -> int:
    """Largest number of events in any interval [t, t + window) — covers every possible server alignment."""
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while times[start] <= t - window:
            start += 1
        best = max(best, end - start + 1)
    return best


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3000/3s", Rate(3000, 3.0)),
        ("1000/3s", Rate(1000, 3.0)),
        ("50000/1m", Rate(50000, 60.0)),
        ("250/60s", Rate(250, 60.0)),
        ("250/60", Rate(250, 60.0)),
        ("100/s", Rate(100, 1.0)),
        ("20000/1h", Rate(20000, 3600.0)),
        (" 2500 / 1 min ", Rate(2500, 60.0)),
    ],
)
def test_parse_rate_accepts_the_usual_forms(text, expected):
    assert parse_rate(text) == expected


@pytest.mark.parametrize("text", ["", "3000", "3000/", "abc/3s", "3000/3x", "0/3s", "3000/0s", "-1/3s", "3k/3s", "1/2/3s"])
def test_parse_rate_rejects_anything_else_with_an_example(text):
    with pytest.raises(ValueError, match="3000/3s|at least 1 request"):
        parse_rate(text)


def test_local_budget_is_a_budget():
    assert isinstance(SlidingWindowBudget(Rate(10, 1)), Budget)


def test_cap_keeps_a_three_percent_margin():
    assert SlidingWindowBudget(parse_rate("3000/3s")).cap == 2910
    assert SlidingWindowBudget(parse_rate("250/60s")).cap == 242
    assert SlidingWindowBudget(parse_rate("1/1s")).cap == 1


def test_never_more_than_the_limit_in_any_server_window_under_concurrency():
    vt = VirtualTime()
    limiter = limiter_on(vt, "3000/3s")
    sent: list[float] = []
    rng = random.Random(7)

    async def sender() -> None:
        while vt.now < 15:
            await limiter.acquire()
            sent.append(vt.wall())
            await asyncio.sleep(rng.uniform(0.002, 0.060))

    async def main() -> None:
        await asyncio.gather(*(sender() for _ in range(64)))

    vt.run(main())
    # Braze counts in fixed 3 s windows starting at epoch multiples of 3.
    per_server_window = Counter(int(t // 3) for t in sent)
    assert max(per_server_window.values()) <= 3000
    assert max_in_any_window(sent, 3.0) <= 2910
    # Sustained: every complete server window carries at least 95 % of the limit.
    first, last = min(per_server_window), max(per_server_window)
    full = [count for window, count in per_server_window.items() if first < window < last]
    assert len(full) >= 3 and min(full) >= 0.95 * 3000


def test_waiters_are_served_in_arrival_order():
    vt = VirtualTime()
    budget = SlidingWindowBudget(Rate(2, 1), margin=1, clock=vt.monotonic, sleep=vt.sleep)
    order: list[int] = []

    async def take(n: int) -> None:
        await budget.acquire()
        order.append(n)

    async def main() -> None:
        await asyncio.gather(*(take(n) for n in range(6)))

    vt.run(main())
    assert order == list(range(6))
    assert vt.now == pytest.approx(2.0)


def test_lower_limit_header_lowers_the_cap_but_never_raises_it():
    vt = VirtualTime()
    limiter = limiter_on(vt, "3000/3s")
    limiter.observe(201, {"X-RateLimit-Limit": "1000"})
    assert limiter.budget.cap == 970
    limiter.observe(201, {"X-RateLimit-Limit": "50000"})
    assert limiter.budget.cap == 970


def test_exhausted_remaining_waits_for_reset_in_seconds():
    vt = VirtualTime()
    limiter = limiter_on(vt)

    async def main() -> float:
        limiter.observe(201, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "2"})
        await limiter.acquire()
        return vt.now

    assert vt.run(main()) >= 2.0


def test_exhausted_remaining_waits_for_reset_as_epoch():
    vt = VirtualTime()
    limiter = limiter_on(vt)
    reset_epoch = int(vt.wall()) + 3

    async def main() -> float:
        limiter.observe(201, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset_epoch)})
        await limiter.acquire()
        return vt.wall()

    assert vt.run(main()) >= reset_epoch


def test_remaining_counts_down_with_our_own_sends():
    vt = VirtualTime()
    limiter = limiter_on(vt)

    async def main() -> list[float]:
        limiter.observe(201, {"x-ratelimit-remaining": "2", "x-ratelimit-reset": "3"})
        times = []
        for _ in range(3):
            await limiter.acquire()
            times.append(vt.now)
        return times

    assert vt.run(main()) == [0.0, 0.0, pytest.approx(3.05)]


def test_out_of_order_answers_keep_the_lowest_remaining_of_a_window():
    vt = VirtualTime()
    limiter = limiter_on(vt)
    limiter.observe(201, {"x-ratelimit-remaining": "5", "x-ratelimit-reset": "3"})
    limiter.observe(201, {"x-ratelimit-remaining": "9", "x-ratelimit-reset": "3"})
    assert limiter._remaining == 5
    vt.now = 3.2
    limiter.observe(201, {"x-ratelimit-remaining": "2999", "x-ratelimit-reset": "3"})
    assert limiter._remaining == 2999


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"X-Ratelimit-Retry-After": "7"}, 7),
        ({"x-ratelimit-retry-after": "7", "Retry-After": "20"}, 7),
        ({"Retry-After": "5"}, 5),
        ({"X-RateLimit-Reset": "4"}, 4),
        ({}, 3),
    ],
)
def test_429_pauses_all_senders_for_the_announced_time(headers, expected):
    vt = VirtualTime()
    limiter = limiter_on(vt)
    assert limiter.observe(429, headers) == pytest.approx(expected + 0.05)
    assert limiter.pause_remaining() == pytest.approx(expected + 0.05)


def test_429_with_reset_epoch_and_http_date():
    vt = VirtualTime()
    limiter = limiter_on(vt)
    epoch = vt.wall() + 6
    assert limiter.observe(429, {"X-RateLimit-Reset": str(int(epoch))}) == pytest.approx(int(epoch) - vt.wall() + 0.05)
    later = limiter_on(vt)
    date = formatdate(vt.wall() + 10, usegmt=True)
    assert later.observe(429, {"Retry-After": date}) == pytest.approx(10, abs=1.1)


def test_429_never_hammers_even_when_told_to_retry_now():
    vt = VirtualTime()
    limiter = limiter_on(vt, max_pause=100)
    assert limiter.observe(429, {"Retry-After": "0"}) == MIN_PAUSE
    assert limiter_on(vt, max_pause=100).observe(429, {"Retry-After": "99999"}) == 100


def test_429_holds_back_every_concurrent_sender():
    vt = VirtualTime()
    limiter = limiter_on(vt)
    sent: list[float] = []

    async def sender() -> None:
        await limiter.acquire()
        sent.append(vt.now)

    async def main() -> None:
        limiter.observe(429, {"X-Ratelimit-Retry-After": "4"})
        await asyncio.gather(*(sender() for _ in range(20)))

    vt.run(main())
    assert len(sent) == 20 and min(sent) >= 4.0


def test_a_shared_budget_plugs_in():
    grants: list[int] = []

    class SharedBudget:
        async def acquire(self, n: int = 1) -> None:
            grants.append(n)

        def lower_limit(self, requests: int) -> None:
            grants.append(-requests)

    vt = VirtualTime()
    limiter = limiter_on(vt, budget=SharedBudget())

    async def main() -> None:
        for _ in range(3):
            await limiter.acquire()
        limiter.observe(201, {"X-RateLimit-Limit": "100"})

    vt.run(main())
    assert grants == [1, 1, 1, -100]


def test_malformed_headers_are_ignored():
    vt = VirtualTime()
    limiter = limiter_on(vt)
    limiter.observe(201, {"X-RateLimit-Limit": "lots", "X-RateLimit-Remaining": "nan", "X-RateLimit-Reset": ""})
    assert limiter.budget.cap == 2910 and limiter._remaining is None
    assert limiter.observe(429, {"Retry-After": "soon"}) == pytest.approx(3.05)
