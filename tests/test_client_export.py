"""BrazeExporter (`/users/export/ids`): chunks of 50, its own rate limit, the same classification."""

from __future__ import annotations

import httpx
import orjson
import pytest

from connectors.braze.export import BrazeExporter
from connectors.braze.outcomes import BrazeConfigError, BrazeRejected
from connectors.braze.ratelimit import parse_rate
from tests.test_ratelimit import VirtualTime

KEY = "export-key-5e1"


class FakeExport:
    """Answers scripted failures first, then profiles for known ids; records (virtual time, body)."""

    def __init__(self, vt: VirtualTime, script=(), known=lambda uid: not uid.startswith("ghost")) -> None:
        self.vt = vt
        self.script = list(script)
        self.known = known
        self.requests: list[tuple[float, dict]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        doc = orjson.loads(request.content)
        self.requests.append((self.vt.now, doc))
        assert request.url.path == "/users/export/ids" and request.headers["Authorization"] == f"Bearer {KEY}"
        if self.script:
            answer = self.script.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer
        ids = doc["external_ids"]
        users = [{"external_id": uid, "email": f"{uid}@example.com"} for uid in ids if self.known(uid)]
        return httpx.Response(201, json={"users": users, "invalid_user_ids": [u for u in ids if not self.known(u)],
                                         "message": "success"})


def exporter(fake: FakeExport, **kwargs) -> BrazeExporter:
    vt = fake.vt
    return BrazeExporter("https://rest.test.braze.eu", KEY, transport=httpx.MockTransport(fake),
                         clock=vt.monotonic, sleep=vt.sleep, wall_clock=vt.wall, **kwargs)


def test_exports_in_chunks_of_50_within_250_per_minute():
    fake = FakeExport(VirtualTime())
    ids = [f"u{i}" for i in range(12_600)] + ["ghost-1"]
    result = fake.vt.run(exporter(fake).export_users(ids, ["email", "custom_attributes"]))
    assert [len(doc["external_ids"]) for _, doc in fake.requests] == [50] * 252 + [1]
    assert fake.requests[0][1]["fields_to_export"] == ["email", "custom_attributes"]
    assert len(result.users) == 12_600 and result.invalid_user_ids == ["ghost-1"] and result.pending_ids == []
    # 253 requests at 242 per sliding minute (97 % of 250): the last ones wait for the next minute.
    assert 60 <= fake.vt.now < 61


def test_export_retries_429_and_5xx_then_reports_unanswered_ids_as_pending():
    fake = FakeExport(VirtualTime(), script=[httpx.Response(429, headers={"Retry-After": "30"}), httpx.Response(503)])
    result = fake.vt.run(exporter(fake).export_users(["a", "b"], ["email"]))
    assert [u["external_id"] for u in result.users] == ["a", "b"]
    assert (result.requests, result.retries, result.throttled) == (3, 1, 1) and fake.requests[1][0] >= 30

    failing = FakeExport(VirtualTime(), script=[httpx.ReadTimeout("slow")] * 3)
    result = failing.vt.run(exporter(failing, max_attempts=3).export_users([f"u{i}" for i in range(60)], ["email"]))
    assert result.pending_ids == [f"u{i}" for i in range(50)] and len(result.users) == 10


@pytest.mark.parametrize(("status", "error"), [(401, BrazeConfigError), (403, BrazeConfigError), (400, BrazeRejected)])
def test_export_refusals_raise(status, error):
    fake = FakeExport(VirtualTime(), script=[httpx.Response(status, json={"message": "no"})])
    with pytest.raises(error) as caught:
        fake.vt.run(exporter(fake).export_users(["a"], ["email"]))
    assert KEY not in str(caught.value)


def test_export_needs_fields():
    with pytest.raises(ValueError, match="fields_to_export"):
        VirtualTime().run(exporter(FakeExport(VirtualTime())).export_users(["a"], []))


def test_export_rate_is_configurable():
    fake = FakeExport(VirtualTime())
    fake.vt.run(exporter(fake, rate=parse_rate("2500/1m")).export_users([f"u{i}" for i in range(5000)], ["email"]))
    assert fake.vt.now < 1
