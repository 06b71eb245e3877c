"""Conformance: injected faults (5xx, applied-then-5xx, resets, 429 storms, latency), seeded."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.sandbox.helpers import attrs, event


def test_rule_5xx_fault_is_not_applied(make_api):
    """Rule (faults): a 5xx fault answers 502, 503 or 504 and stores nothing."""
    api = make_api(fail_rate=1.0)
    statuses = {api.track(attributes=[attrs(f"u{i}")]).status_code for i in range(20)}
    assert statuses <= {502, 503, 504} and len(statuses) > 1
    assert api.handle.profiles() == {}
    assert api.stats()["faults"]["fail"] == 20


def test_rule_applied_then_5xx_stores_the_write(make_api):
    """Rule (faults): applied-then-5xx stores the write and answers 502 or 504; a retry then
    double-counts the events (Braze never deduplicates)."""
    api = make_api(applied_then_fail_rate=1.0)
    response = api.track(attributes=[attrs(plan="gold")], events=[event()])
    assert response.status_code in (502, 504)
    assert api.profile("u1")["custom_attributes"] == {"plan": "gold"}
    api.handle.set_faults(applied_then_fail_rate=0.0)
    assert api.track(events=[event()]).status_code == 201
    assert len(api.profile("u1")["events"]) == 2
    assert api.stats()["faults"]["applied_then_fail"] == 1


def test_rule_connection_reset_closes_without_answer(make_api):
    """Rule (faults): a reset closes the socket without any response and applies nothing."""
    api = make_api(reset_rate=1.0)
    with pytest.raises(httpx.TransportError):
        api.track(attributes=[attrs()])
    assert api.handle.profiles() == {}
    assert api.stats()["faults"]["reset"] == 1


def test_rule_429_storm_regardless_of_budget(make_api):
    """Rule (faults): a 429 storm answers 429 whatever the budget left, with Remaining 0, and each
    one is counted as throttled."""
    api = make_api(storm_rate=1.0, rate_limit="3000/3s")
    responses = [api.track(attributes=[attrs()]) for _ in range(3)]
    assert [r.status_code for r in responses] == [429, 429, 429]
    assert all(r.headers["X-RateLimit-Remaining"] == "0" for r in responses)
    stats = api.stats()
    assert stats["throttled"] == 3 and stats["faults"]["storm"] == 3
    assert api.handle.profiles() == {}


def test_rule_latency_delays_answers(make_api):
    """Rule (faults): latency_ms delays every /users/track answer."""
    api = make_api(latency_ms=150)
    start = time.perf_counter()
    assert api.track(attributes=[attrs()]).status_code == 201
    assert time.perf_counter() - start >= 0.15
    assert api.stats()["faults"]["latency"] == 1


def test_rule_faults_are_reproducible_with_a_seed(make_api):
    """Rule (faults): the same seed gives the same faults for the same sequence of requests."""

    def run(seed: int) -> list[int]:
        api = make_api(fail_rate=0.3, applied_then_fail_rate=0.2, storm_rate=0.1, seed=seed)
        return [api.track(attributes=[attrs(f"u{i}")]).status_code for i in range(40)]

    first, second, other = run(7), run(7), run(8)
    assert first == second
    assert first != other
    assert len(set(first)) > 2


def test_rule_faults_change_at_run_time(api):
    """Rule (faults): fault rates can be changed while the server runs (set_faults, or
    PATCH /_sandbox/config)."""
    api.handle.set_faults(fail_rate=1.0)
    assert api.track(attributes=[attrs()]).status_code in (502, 503, 504)
    api.handle.set_faults(fail_rate=0.0)
    assert api.track(attributes=[attrs()]).status_code == 201


def test_rule_fault_counters(make_api):
    """Rule (faults): each injected fault is counted by kind."""
    api = make_api(fail_rate=0.25, storm_rate=0.25, seed=3)
    statuses = [api.track(attributes=[attrs()]).status_code for _ in range(40)]
    faults = api.stats()["faults"]
    assert faults["fail"] == sum(s >= 500 for s in statuses)
    assert faults["storm"] == statuses.count(429)
    assert set(faults) == {"fail", "applied_then_fail", "reset", "storm", "latency"}


def test_rule_hooks_meet_no_fault(make_api):
    """Rule (sandbox): the /_sandbox hooks are never faulted, limited or counted."""
    api = make_api(fail_rate=1.0, reset_rate=1.0, rate_limit="1/1h")
    for _ in range(3):
        assert httpx.get(api.handle.url + "/_sandbox/stats").status_code == 200
    assert api.stats()["requests"] == 0
