"""Conformance: rate limits, their headers, 429s, and the count of requests over the limit."""

from __future__ import annotations

import math
import time

import httpx

from tests.sandbox.helpers import attrs


def rate_headers(response: httpx.Response) -> tuple[int, int, int]:
    return (
        int(response.headers["X-RateLimit-Limit"]),
        int(response.headers["X-RateLimit-Remaining"]),
        int(response.headers["X-RateLimit-Reset"]),
    )


def test_rule_default_limit_is_3000_per_3_seconds(make_api):
    """Rule: /users/track allows 3,000 requests per 3 seconds by default."""
    api = make_api(rate_limit="3000/3s")
    limit, remaining, _ = rate_headers(api.track(attributes=[attrs()]))
    assert (limit, remaining) == (3000, 2999)


def test_rule_rate_headers_on_every_response(make_api):
    """Rule: every response carries X-RateLimit-Limit, -Remaining and -Reset (201, 400, 401, 413, 429)."""
    api = make_api(rate_limit="3/1h")
    answers = [
        api.track(attributes=[attrs()]),
        api.track(),
        httpx.post(api.handle.url + "/users/track", json={}),
        api.http.post("/users/track", content=b"x" * (5 * 1024 * 1024)),
    ]
    answers += [api.track(attributes=[attrs()]) for _ in range(2)]
    assert [r.status_code for r in answers] == [201, 400, 401, 413, 429, 429]
    for response in answers:
        rate_headers(response)


def test_rule_429_when_the_window_is_exhausted(make_api):
    """Rule: once the window's budget is spent the answer is 429 and nothing is applied."""
    api = make_api(rate_limit="5/1h")
    statuses = [api.track(attributes=[attrs(f"u{i}")]).status_code for i in range(8)]
    assert statuses == [201] * 5 + [429] * 3
    assert sorted(api.handle.profiles()) == [f"u{i}" for i in range(5)]


def test_rule_remaining_counts_down_and_429_shows_zero(make_api):
    """Rule: X-RateLimit-Remaining is what is left in the current window; a 429 shows 0."""
    api = make_api(rate_limit="4/1h")
    remaining = [rate_headers(api.track(attributes=[attrs()]))[1] for _ in range(5)]
    assert remaining == [3, 2, 1, 0, 0]


def test_rule_reset_is_utc_epoch_seconds_of_window_end(make_api):
    """Rule: X-RateLimit-Reset is the UTC epoch second at which the current window ends."""
    api = make_api(rate_limit="100/3s")
    before = time.time()
    reset = rate_headers(api.track(attributes=[attrs()]))[2]
    assert reset > 10**9
    assert math.floor(before) <= reset <= math.ceil(before) + 3


def test_rule_window_resets_after_its_period(make_api):
    """Rule: windows are fixed; after the period the budget is whole again."""
    api = make_api(rate_limit="2/200ms")
    while api.track(attributes=[attrs()]).status_code != 429:
        pass
    time.sleep(0.25)
    assert api.track(attributes=[attrs()]).status_code == 201


def test_rule_every_429_is_counted(make_api):
    """Rule (sandbox): every 429 is counted (`throttled`), so tests and benchmarks can read the count
    of requests over the limit."""
    api = make_api(rate_limit="3/1h")
    statuses = [api.track(attributes=[attrs()]).status_code for _ in range(7)]
    stats = api.stats()
    assert stats["throttled"] == statuses.count(429) >= 1
    assert stats["requests_by_status"]["429"] == stats["throttled"]
    assert stats["throttled_by_endpoint"]["/users/track"] == stats["throttled"]


def test_rule_mau_policy_hourly_plus_burst(make_api):
    """Rule: MAU contracts have an hourly limit plus a burst limit; both must have room."""
    api = make_api(mau_policy="3/1h+2/500ms")
    accepted = 0
    for _ in range(3):
        while api.track(attributes=[attrs()]).status_code == 201:
            accepted += 1
        time.sleep(0.55)
    assert accepted == 3
    assert api.stats()["throttled"] == 3


def test_rule_mau_reset_is_seconds_remaining_and_retry_after_on_429(make_api):
    """Rule: on MAU contracts X-RateLimit-Reset is seconds remaining (not an epoch), and a 429 carries
    X-Ratelimit-Retry-After (seconds)."""
    api = make_api(mau_policy="100/1h+1/2s")
    first = api.track(attributes=[attrs()])
    assert 0 < int(first.headers["X-RateLimit-Reset"]) <= 3600
    refused = api.track(attributes=[attrs()])
    assert refused.status_code == 429
    assert 0 < int(refused.headers["X-RateLimit-Reset"]) <= 2
    assert 0 < int(refused.headers["X-Ratelimit-Retry-After"]) <= 2


def test_rule_export_has_its_own_limit(make_api):
    """Rule: /users/export/ids has its own limit (250 per minute by default), headers and 429."""
    api = make_api(rate_limit="1/1h", export_rate_limit="2/1h")
    api.track(attributes=[attrs()])
    answers = [api.export(external_ids=["u1"], fields_to_export=["first_name"]) for _ in range(3)]
    assert [r.status_code for r in answers] == [201, 201, 429]
    assert [rate_headers(r)[:2] for r in answers] == [(2, 1), (2, 0), (2, 0)]
    assert api.stats()["throttled_by_endpoint"] == {"/users/export/ids": 1}


def test_rule_default_export_limit_is_250_per_minute(make_api):
    """Rule: the export limit defaults to 250 requests per minute."""
    api = make_api(export_rate_limit="250/60s")
    response = api.export(external_ids=["nobody"], fields_to_export=["email"])
    assert rate_headers(response)[:2] == (250, 249)
