"""The shared lease budget (connectors/braze/ratelimit.py) on an injected clock: no test sleeps."""

from __future__ import annotations

import asyncio
import math
from collections import Counter

import pytest

from connectors.braze.ratelimit import LeasedBudget, RateLimiter, budget_key, parse_rate
from connectors.state.ledger import Ledger

T0 = 1_800_000_000.0  # a window start for 1 s and 3 s periods alike


class FakeTime:
    """Wall clock and sleep: a sleep moves the clock to the sleeper's wake-up time and records the wait."""

    def __init__(self, now: float = T0) -> None:
        self.now = now
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now = max(self.now, self.now + seconds)
        await asyncio.sleep(0)


class CountingStore:
    """A ledger's lease, counting calls."""

    def __init__(self, ledger) -> None:
        self.ledger = ledger
        self.calls: list[tuple[int, int, int]] = []

    def lease(self, key, window, cap, n):
        granted, current = self.ledger.lease(key, window, cap, n)
        self.calls.append((window, n, granted))
        return granted, current


@pytest.fixture
def store(tmp_path):
    led = Ledger(tmp_path / "ledger.sqlite")
    yield CountingStore(led)
    led.close()


def budget(store, rate="40/1s", clock=None, **kw) -> LeasedBudget:
    clock = clock or FakeTime()
    return LeasedBudget(store, parse_rate(rate), key="/users/track@test", clock=clock, sleep=clock.sleep,
                        in_thread=False, **kw)


def test_two_workers_together_never_exceed_the_cap_of_any_window(store, tmp_path):
    clock = FakeTime(T0 + 0.3)
    other = CountingStore(store.ledger.reopen())
    workers = [budget(store, clock=clock), budget(other, clock=clock)]
    grants: list[tuple[int, float]] = []

    async def send(who: int, n: int) -> None:
        for _ in range(n):
            await workers[who].acquire()
            grants.append((who, clock()))
            await asyncio.sleep(0)  # the request goes out; the other worker gets a turn

    async def main() -> None:
        await asyncio.gather(send(0, 200), send(1, 200))

    asyncio.run(main())
    other.ledger.close()
    cap, guard = workers[0].cap, workers[0].guard
    per_window = Counter(math.floor(t) for _, t in grants)
    assert cap == 38 and max(per_window.values()) <= cap
    assert all(guard - 1e-5 <= t - math.floor(t) <= 1 - guard + 1e-5 for _, t in grants)
    assert {who for who, _ in grants} == {0, 1}
    both = [w for w in per_window if {who for who, t in grants if math.floor(t) == w} == {0, 1}]
    assert len(both) >= len(per_window) // 2  # they share windows, not take turns
    # Only the block each worker holds at a window's end can be lost: windows stay nearly full.
    assert len(per_window) <= math.ceil(400 / (cap - 2 * workers[0].block))


def test_permits_are_leased_in_blocks_and_leftovers_drop_at_the_window_end(store):
    clock = FakeTime(T0 + 1.0)
    b = budget(store, "3000/3s", clock=clock)
    assert (b.cap, b.block) == (2910, 100)

    async def take(n):
        for _ in range(n):
            await b.acquire()

    asyncio.run(take(150))
    assert [granted for _, _, granted in store.calls] == [100, 100] and b.leases == 2
    clock.now += 3.0  # the next window
    asyncio.run(take(1))
    assert b.dropped == 50 and store.calls[-1] == (math.floor(clock.now / 3), 100, 100)


def test_no_permit_is_spent_near_a_window_edge(store):
    clock = FakeTime(T0 + 0.995)
    b = budget(store, clock=clock)
    assert b.guard == pytest.approx(0.05)

    asyncio.run(b.acquire())
    assert clock.waits == [pytest.approx(0.055, abs=1e-5)] and clock() == pytest.approx(T0 + 1.05, abs=1e-5)
    clock.now = T0 + 2.01
    asyncio.run(b.acquire())
    assert clock.waits[-1] == pytest.approx(0.04, abs=1e-5)


def test_a_window_spent_by_others_waits_for_the_next(store):
    clock = FakeTime(T0 + 0.2)
    hog = budget(store, clock=clock)
    b = budget(store, clock=clock)
    assert store.ledger.lease(hog.key, math.floor(clock()), hog.cap, hog.cap) == (38, math.floor(clock()))

    asyncio.run(b.acquire())
    assert clock() == pytest.approx(T0 + 1.05, abs=1e-5)
    assert [granted for _, _, granted in store.calls] == [0, 9]


def test_a_lower_limit_holds_for_every_worker(store):
    clock = FakeTime(T0 + 0.2)
    a, b = budget(store, clock=clock), budget(store, clock=clock)
    a.lower_limit(20)
    assert (a.cap, a.block) == (19, 4)
    asyncio.run(a.acquire())
    granted = 4
    for _ in range(10):
        granted += store.lease(b.key, math.floor(clock()), b.cap, b.block)[0]
    assert granted == 19


def test_the_rate_limiter_draws_from_the_shared_budget(store):
    clock = FakeTime(T0 + 0.1)
    b = budget(store, "10/1s", clock=clock)
    limiter = RateLimiter(parse_rate("10/1s"), budget=b, clock=clock, wall_clock=clock, sleep=clock.sleep)

    async def take(n):
        for _ in range(n):
            await limiter.acquire()

    asyncio.run(take(20))
    assert b.cap == 9 and b.block == 2 and b.leased >= 20
    assert math.floor(clock()) - math.floor(T0) == 2  # 9 + 9 + 2 permits: three windows


def test_the_budget_key_names_the_endpoint_never_a_credential():
    assert budget_key("https://rest.iad-01.braze.com") == "/users/track@rest.iad-01.braze.com"
    assert budget_key("http://user:secret@127.0.0.1:9077/") == "/users/track@127.0.0.1:9077"


def test_a_guard_of_half_the_window_or_more_is_refused(store):
    with pytest.raises(ValueError):
        budget(store, "10/1s", guard=0.5)


def test_a_lagging_clock_gets_nothing_and_says_why(store, caplog):
    clock = FakeTime(T0 + 0.5)
    ahead = budget(store, clock=FakeTime(T0 + 5.5))
    asyncio.run(ahead.acquire())
    lagging = budget(store, clock=clock)

    async def one_lease():
        return await lagging._lease(math.floor(clock()), 9)

    with caplog.at_level("WARNING"):
        assert asyncio.run(one_lease()) == 0
    assert "ahead of this worker's clock" in caplog.text
