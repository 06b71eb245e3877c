"""connectors/braze/catalogs.py: exact answer sequences (a fake transport only for those): write-ahead order,
429 and 5xx retried through the one retry layer, a 400 kept with Braze's error ids, a bad key stopping the loop,
and GET /catalogs read into fields with its own budget."""

from __future__ import annotations

import httpx
import orjson
import pytest

from connectors.braze.catalogs import CatalogClient
from connectors.braze.outcomes import BrazeConfigError

ACCEPTED = (202, b'{"message": "success"}')


def client(answers: list[tuple[int, bytes]], seen: list) -> CatalogClient:
    queue = list(answers)

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path))
        status, body = queue.pop(0)
        return httpx.Response(status, content=body, headers={"Content-Type": "application/json"})

    c = CatalogClient("http://braze.test", "key", rate="1000/1s", max_attempts=3, max_seconds=30,
                      transport=httpx.MockTransport(handle))
    c.limiter.max_pause = 0.05
    return c


def run(c: CatalogClient, batches) -> list:
    events = []
    c.send_all("products", batches, lambda b: events.append(("sending", b)), lambda b, r: events.append((b, r)))
    return events


def test_throttled_and_5xx_are_retried_then_acknowledged_after_sending_is_recorded(monkeypatch):
    monkeypatch.setattr("connectors.braze.retries.BACKOFF_MAX", 0.0)
    seen: list = []
    events = run(client([(429, b"{}"), (503, b"{}"), ACCEPTED], seen), [(0, "PATCH", b'{"items":[{"id":"a"}]}')])
    assert seen == [("PATCH", "/catalogs/products/items")] * 3
    assert events[0] == ("sending", 0)
    result = events[1][1]
    assert (result.status, result.requests, result.throttled) == ("acknowledged", 3, 1)


def test_a_400_is_rejected_with_braze_error_ids_and_the_next_batch_goes_on():
    seen: list = []
    refused = orjson.dumps({"errors": [{"id": "invalid-fields", "message": "Some of the fields given do not exist",
                                        "parameters": ["id"], "parameter_values": ["a"]}], "message": "Invalid Request"})
    events = run(client([(400, refused), ACCEPTED], seen), [(0, "POST", b"{}"), (1, "DELETE", b"{}")])
    assert [(b, r.status, r.reason) for b, r in events if b != "sending"] == [
        (0, "rejected", "invalid-fields"), (1, "acknowledged", None)]


def test_a_bad_key_stops_the_loop_after_recording_the_batch():
    seen: list = []
    c = client([(401, b'{"message": "Unauthorized"}')], seen)
    events = []
    with pytest.raises(BrazeConfigError):
        c.send_all("products", [(0, "POST", b"{}"), (1, "POST", b"{}")], lambda b: events.append(("sending", b)),
                   lambda b, r: events.append((b, r.status)))
    assert events == [("sending", 0), (0, "pending")] and len(seen) == 1


def test_list_fields_reads_each_catalog_and_its_fields():
    seen: list = []
    answer = orjson.dumps({"catalogs": [{"name": "products", "fields": [{"name": "id", "type": "string"}],
                                         "num_items": 0}], "message": "success"})
    c = client([(200, answer)], seen)
    assert c.list_fields() == {"products": [{"name": "id", "type": "string"}]}
    assert seen == [("GET", "/catalogs")] and c.list_limiter is not c.limiter
