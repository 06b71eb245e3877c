"""Issue 13 point 3: the shared budget is keyed by the limit it was created for, and its waits are bounded."""

from __future__ import annotations

import asyncio
import math

import pytest

from connectors.braze.ratelimit import LeasedBudget, RateBudgetError, parse_rate
from connectors.state.ledger import Ledger
from tests.test_budget import T0, FakeTime

KEY = "/users/track@127.0.0.1:9077"


@pytest.fixture
def ledger(tmp_path):
    led = Ledger(tmp_path / "ledger.sqlite")
    yield led
    led.close()


def budget(ledger, rate: str, clock: FakeTime) -> LeasedBudget:
    return LeasedBudget(ledger, parse_rate(rate), key=KEY, clock=clock, sleep=clock.sleep, in_thread=False)


def test_a_changed_limit_starts_a_fresh_budget_instead_of_waiting(ledger):
    clock = FakeTime(T0 + 0.5)
    backfill = budget(ledger, "40/1s", clock)
    asyncio.run(backfill.acquire(10))
    clock.now += 5
    sync = budget(ledger, "3000/3s", clock)  # window numbers of 3 s are a third of those of 1 s
    asyncio.run(sync.acquire(100))
    assert sum(clock.waits) < 3 and sync.key != backfill.key
    assert "3000/3s" in sync.key and "40/1s" in backfill.key


def test_the_same_limit_shares_one_row(ledger):
    clock = FakeTime(T0 + 0.5)
    one, two = budget(ledger, "40/1s", clock), budget(ledger, "40/1s", clock)
    assert one.key == two.key
    asyncio.run(one.acquire(one.cap))
    granted, _ = ledger.lease(two.key, math.floor(clock()), two.cap, 1)
    assert granted == 0  # the window is spent by the first one


def test_a_row_far_ahead_of_the_clock_stops_with_one_line_instead_of_waiting_forever(ledger):
    clock = FakeTime(T0 + 0.5)
    worker = budget(ledger, "40/1s", clock)
    ledger.lease(worker.key, math.floor(clock()) + 1_000_000, worker.cap, 1)  # a damaged row, a clock years off
    with pytest.raises(RateBudgetError) as caught:
        asyncio.run(worker.acquire())
    assert "ahead" in str(caught.value) and "\n" not in str(caught.value) and sum(clock.waits) < 1


def test_a_row_a_little_ahead_is_a_clock_offset_and_only_waits_for_it(ledger):
    clock = FakeTime(T0 + 0.5)
    worker = budget(ledger, "40/1s", clock)
    ledger.lease(worker.key, math.floor(clock()) + 1, worker.cap, 1)
    asyncio.run(worker.acquire())
    assert 0 < sum(clock.waits) <= 2.1
