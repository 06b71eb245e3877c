"""connectors/braze/deletes.py: exact answer sequences (a fake transport only for those), through the one retry
layer and the classifier shared with /users/track."""

from __future__ import annotations

import httpx
import orjson
import pytest

from connectors.braze.deletes import DeleteClient
from connectors.braze.outcomes import BrazeConfigError


def client(answers: list[tuple[int, bytes]], seen: list) -> DeleteClient:
    queue = list(answers)

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(orjson.loads(request.content))
        status, body = queue.pop(0)
        return httpx.Response(status, content=body, headers={"Content-Type": "application/json"})

    c = DeleteClient("http://braze.test", "key", rate="1000/1s", max_attempts=3, max_seconds=30,
                     transport=httpx.MockTransport(handle))
    c.limiter.max_pause = 0.05
    return c


def run(c: DeleteClient, batches) -> list:
    events = []
    c.delete_all(batches, lambda b: events.append(("sending", b)), lambda b, r: events.append((b, r)))
    return events


OK = (201, b'{"deleted": 2, "message": "success"}')


def test_a_5xx_is_retried_then_acknowledged_and_sending_is_recorded_first(monkeypatch):
    monkeypatch.setattr("connectors.braze.retries.BACKOFF_MAX", 0.0)
    seen: list = []
    events = run(client([(503, b"{}"), OK], seen), [(0, ["a", "b"])])
    assert events[0] == ("sending", 0)
    result = events[1][1]
    assert (result.status, result.deleted, result.requests, result.retries) == ("acknowledged", 2, 2, 1)
    assert seen == [{"external_ids": ["a", "b"]}] * 2


def test_a_400_is_rejected_and_not_retried():
    seen: list = []
    events = run(client([(400, b'{"message": "bad"}'), OK], seen), [(0, ["a"]), (1, ["b"])])
    assert [e[1].status for e in events if e[0] != "sending"] == ["rejected", "acknowledged"]
    assert len(seen) == 2


def test_an_html_200_is_not_an_acknowledgement_and_a_bad_key_stops_the_loop():
    seen: list = []
    with pytest.raises(BrazeConfigError):
        run(client([(401, b'{"message": "no"}'), OK], seen), [(0, ["a"]), (1, ["b"])])
    assert len(seen) == 1
    seen = []
    with pytest.raises(BrazeConfigError):
        run(client([(200, b"<html>login</html>")], seen), [(0, ["a"])])


def test_more_than_50_ids_is_refused_before_sending():
    with pytest.raises(ValueError):
        run(client([OK], []), [(0, [str(i) for i in range(51)])])
