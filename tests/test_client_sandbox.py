"""BrazeLoader over real HTTP (its default httpx-aiohttp transport) against the local Braze sandbox."""

from __future__ import annotations

import asyncio
from collections import Counter

import orjson
import pytest
from braze_sandbox import SandboxConfig, start_sandbox

from connectors.braze.client import BatchRequest, BrazeLoader
from connectors.braze.export import BrazeExporter
from connectors.braze.outcomes import BrazeConfigError, ObjectError
from connectors.braze.ratelimit import parse_rate

KEY = "sandbox-client-test-key"
TIME = "2024-05-01T12:00:00Z"


@pytest.fixture
def sandbox():
    with start_sandbox(SandboxConfig(api_key=KEY, seed=11)) as handle:
        yield handle


async def short_sleep(seconds: float) -> None:
    """Backoff in milliseconds instead of seconds; rate windows still pass in real time (the limiter re-checks)."""
    await asyncio.sleep(min(seconds, 0.02))


def users(batch: int, bad_email_at: int | None = None) -> bytes:
    return orjson.dumps({"attributes": [
        {"external_id": f"u{batch}-{i}", "email": "not-an-email" if i == bad_email_at else f"u{batch}.{i}@example.com"}
        for i in range(75)
    ]})


def mixed(batch: int) -> bytes:
    """25 users, each with one attributes object, one event and one purchase named after the batch and user."""
    ids = [f"m{batch}-{i}" for i in range(25)]
    return orjson.dumps({
        "attributes": [{"external_id": uid, "tier": "gold"} for uid in ids],
        "events": [{"external_id": uid, "name": f"e-{uid}", "time": TIME} for uid in ids],
        "purchases": [{"external_id": uid, "product_id": f"p-{uid}", "currency": "EUR", "price": 9.5, "time": TIME}
                      for uid in ids],
    })


def load(url: str, batches: list[BatchRequest], **kwargs) -> tuple[dict, object]:
    results: dict = {}
    sending: list[int] = []
    loader = BrazeLoader(url, KEY, rate=kwargs.pop("rate", parse_rate("3000/3s")), **kwargs)
    stats = loader.run_sync(batches, sending.append, lambda result: results.__setitem__(result.batch_no, result))
    assert sorted(sending) == sorted(results) == [batch.batch_no for batch in batches]
    return results, stats


def occurrences(sandbox) -> Counter:
    """How many times the sandbox stored each event name and product id."""
    counts: Counter = Counter()
    for profile in sandbox.profiles().values():
        counts.update(event["name"] for event in profile.get("events", []))
        counts.update(purchase["product_id"] for purchase in profile.get("purchases", []))
    return counts


def test_real_http_load_acknowledges_and_maps_rejected_objects(sandbox):
    batches = [BatchRequest(n, users(n, bad_email_at=n)) for n in range(20)]
    results, stats = load(sandbox.url, batches, concurrency=8)
    assert stats.acknowledged == 20 and stats.requests == 20
    for n, result in results.items():
        assert result.errors == [ObjectError("attributes", n, "EMAIL_BAD_FORMAT")]
    assert sandbox.stats()["profiles"] == 20 * 74


def test_a_wrong_key_stops_the_run(sandbox):
    loader = BrazeLoader(sandbox.url, "not-the-key", rate=parse_rate("3000/3s"))
    with pytest.raises(BrazeConfigError, match=r"\(401\).*BRAZE_API_KEY"):
        loader.run_sync([BatchRequest(n, users(n)) for n in range(5)], lambda n: None, lambda r: None)


def test_faults_never_duplicate_events_or_purchases_with_the_skip_policy(sandbox):
    sandbox.set_faults(applied_then_fail_rate=0.2, fail_rate=0.1, reset_rate=0.05, seed=5)
    batches = [BatchRequest(n, mixed(n)) for n in range(40)]
    results, stats = load(sandbox.url, batches, concurrency=8, in_doubt_policy="skip", sleep=short_sleep)
    assert stats.in_doubt and stats.retries  # the faults did happen
    counts = occurrences(sandbox)
    assert max(counts.values()) == 1
    for n, result in results.items():
        ids = [f"m{n}-{i}" for i in range(25)]
        pending = set(result.pending)
        for i, uid in enumerate(ids):
            if ("events", i) not in pending:
                assert counts[f"e-{uid}"] == 1  # acknowledged: stored exactly once
            if ("purchases", i) not in pending:
                assert counts[f"p-{uid}"] == 1


def test_resend_policy_duplicates_only_inside_batches_reported_in_doubt(sandbox):
    sandbox.set_faults(applied_then_fail_rate=0.3, seed=8)
    batches = [BatchRequest(n, mixed(n)) for n in range(30)]
    results, stats = load(sandbox.url, batches, concurrency=8, in_doubt_policy="resend", sleep=short_sleep)
    assert all(result.status == "acknowledged" for result in results.values())
    counts = occurrences(sandbox)
    duplicated_batches = {int(name.split("-")[1][1:]) for name, count in counts.items() if count > 1}
    assert duplicated_batches and duplicated_batches <= set(stats.in_doubt)


def test_real_http_stays_within_the_server_windows(sandbox):
    sandbox.configure(rate_limit="120/1s")
    batches = [BatchRequest(n, orjson.dumps({"attributes": [{"external_id": f"r{n}"}]})) for n in range(260)]
    _, stats = load(sandbox.url, batches, rate=parse_rate("120/1s"), concurrency=16)
    assert stats.acknowledged == 260
    assert stats.throttled == 0 and sandbox.stats()["throttled"] == 0


def test_export_reads_back_what_was_loaded(sandbox):
    load(sandbox.url, [BatchRequest(0, users(0))])
    exporter = BrazeExporter(sandbox.url, KEY)
    result = exporter.export_users_sync([f"u0-{i}" for i in range(75)] + ["nobody"], ["email", "external_id"])
    assert sorted(user["email"] for user in result.users) == sorted(f"u0.{i}@example.com" for i in range(75))
    assert result.invalid_user_ids == ["nobody"] and result.pending_ids == [] and result.requests == 2
