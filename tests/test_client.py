"""BrazeLoader against exact fault sequences (httpx.MockTransport) on virtual time: no test really sleeps."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from types import SimpleNamespace

import aiohttp
import httpx
import orjson
import pytest

from connectors.braze.client import BatchRequest, BrazeLoader
from connectors.braze.outcomes import BrazeBodyError, BrazeConfigError, ObjectError
from connectors.braze.ratelimit import parse_rate
from tests.test_ratelimit import VirtualTime

KEY = "sk-test-7f3a9c0d"
ENDPOINT = "https://rest.test.braze.com/"
ARRAYS = ("attributes", "events", "purchases")


def body(attributes: int = 0, events: int = 0, purchases: int = 0, poison=(), named=(), batch: int = 0) -> bytes:
    """A request; every object carries its planned (array, index) as `ref` so the fake server can tell them apart.
    `poison` objects make the fake Braze answer 400; `named` ones make it list them in a 201's errors[]."""
    doc = {}
    for array, count in zip(ARRAYS, (attributes, events, purchases)):
        if count:
            doc[array] = [
                {"external_id": f"b{batch}-user-{i}", "ref": [array, i], "poison": (array, i) in poison, "bad": (array, i) in named}
                for i in range(count)
            ]
    return orjson.dumps(doc)


def created(errors=(), headers=None) -> httpx.Response:
    return httpx.Response(201, json={"message": "success", **({"errors": list(errors)} if errors else {})}, headers=headers)


class FakeBraze:
    """Answers from `script` first (responses, exceptions or callables of the request doc), then `default`.

    Records every request (virtual time, doc) and every object it processed, to check exactly-once delivery.
    """

    def __init__(self, vt: VirtualTime, script=(), default=None, latency: float = 0.0) -> None:
        self.vt = vt
        self.script = list(script)
        self.default = default or self.careful
        self.latency = latency
        self.requests: list[tuple[float, dict, httpx.Request]] = []
        self.processed: Counter = Counter()
        self.active = self.max_active = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        doc = orjson.loads(request.content) if request.content.startswith(b"{") else {}
        self.requests.append((self.vt.now, doc, request))
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            if self.latency:
                await asyncio.sleep(self.latency)
            answer = self.script.pop(0) if self.script else self.default
            if isinstance(answer, Exception):
                raise answer
            answer = answer(doc) if callable(answer) else answer
        finally:
            self.active -= 1
        if answer.status_code == 201:
            self._book(doc, answer)
        return answer

    def careful(self, doc: dict) -> httpx.Response:
        """Like Braze: 400 when the request holds a poison object, 201 naming `bad` objects by sent index."""
        if any(obj["poison"] for array in ARRAYS for obj in doc.get(array, ())):
            return httpx.Response(400, json={"message": "Invalid object in request", "errors": []})
        errors = [
            {"type": "EMAIL_BAD_FORMAT", "input_array": array, "index": i}
            for array in ARRAYS
            for i, obj in enumerate(doc.get(array, ()))
            if obj["bad"]
        ]
        return created(errors)

    def _book(self, doc: dict, answer: httpx.Response) -> None:
        named = {(e["input_array"], e["index"]) for e in orjson.loads(answer.content).get("errors", [])}
        for array in ARRAYS:
            for i, obj in enumerate(doc.get(array, ())):
                if (array, i) not in named:
                    self.processed[tuple(obj["ref"])] += 1

    def bodies(self) -> list[dict]:
        return [doc for _, doc, _ in self.requests]


def loader_for(fake: FakeBraze, *, rate: str = "3000/3s", **kwargs) -> BrazeLoader:
    """A loader talking to `fake` on its virtual time."""
    kwargs.setdefault("transport", httpx.MockTransport(fake))
    vt = fake.vt
    return BrazeLoader(ENDPOINT, KEY, rate=parse_rate(rate), clock=vt.monotonic, sleep=vt.sleep, wall_clock=vt.wall,
                       **kwargs)


def load(fake: FakeBraze, batches, **kwargs) -> SimpleNamespace:
    """Run a loader over `batches` on the fake's virtual time; returns results, stats and the event log."""
    vt = fake.vt
    loader = loader_for(fake, **kwargs)
    log: list[tuple] = []
    results: dict[int, object] = {}

    def on_sending(batch_no: int) -> None:
        log.append(("sending", batch_no, len(fake.requests)))

    def on_result(result) -> None:
        log.append(("result", result.batch_no, len(fake.requests)))
        results[result.batch_no] = result

    stats = vt.run(loader.run(batches, on_sending, on_result))
    return SimpleNamespace(loader=loader, stats=stats, results=results, log=log, fake=fake)


def one(fake: FakeBraze, request_body: bytes, **kwargs):
    run = load(fake, [BatchRequest(0, request_body)], **kwargs)
    return run.results[0]


def objects(attributes=0, events=0, purchases=0) -> set[tuple[str, int]]:
    return {(array, i) for array, count in zip(ARRAYS, (attributes, events, purchases)) for i in range(count)}


def test_201_acknowledges_the_batch_with_auth_headers_and_url():
    fake = FakeBraze(VirtualTime())
    result = one(fake, body(attributes=75))
    assert result.status == "acknowledged" and result.errors == [] and result.pending == []
    assert (result.requests, result.retries, result.throttled, result.in_doubt) == (1, 0, 0, False)
    assert result.status_codes == {"201": 1}
    request = fake.requests[0][2]
    assert str(request.url) == "https://rest.test.braze.com/users/track"
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert request.headers["Content-Type"] == "application/json"
    assert request.content == body(attributes=75)


def test_201_with_errors_rejects_exactly_the_named_objects():
    fake = FakeBraze(VirtualTime())
    result = one(fake, body(attributes=30, events=20, purchases=25, named={("attributes", 3), ("purchases", 24)}))
    assert result.status == "acknowledged"
    assert result.errors == [
        ObjectError("attributes", 3, "EMAIL_BAD_FORMAT"),
        ObjectError("purchases", 24, "EMAIL_BAD_FORMAT"),
    ]
    assert len(fake.requests) == 1
    assert set(fake.processed) == objects(30, 20, 25) - {("attributes", 3), ("purchases", 24)}


def test_201_error_naming_an_object_the_request_did_not_hold_is_ignored(caplog):
    errors = [{"type": "X", "input_array": "events", "index": 0}, {"type": "Y", "input_array": "attributes", "index": 99}]
    fake = FakeBraze(VirtualTime(), script=[created(errors)])
    with caplog.at_level(logging.WARNING):
        result = one(fake, body(attributes=2))
    assert result.status == "acknowledged" and result.errors == []
    assert "2 objects" in caplog.text


def test_400_split_isolates_one_poison_object_among_75():
    fake = FakeBraze(VirtualTime())
    result = one(fake, body(attributes=75, poison={("attributes", 41)}))
    assert result.status == "acknowledged"
    assert result.errors == [ObjectError("attributes", 41, "Invalid object in request")]
    assert set(fake.processed) == objects(75) - {("attributes", 41)}
    assert set(fake.processed.values()) == {1}
    assert result.requests <= 2 * 7 + 1  # binary search: about two requests per halving


def test_400_split_isolates_two_poison_objects_across_arrays():
    poison = {("attributes", 3), ("events", 30)}
    fake = FakeBraze(VirtualTime())
    result = one(fake, body(attributes=40, events=35, poison=poison))
    assert result.status == "acknowledged"
    assert {(e.array, e.index) for e in result.errors} == poison
    assert set(fake.processed) == objects(40, 35) - poison
    assert set(fake.processed.values()) == {1}


def test_split_maps_201_errors_back_to_the_planned_indexes():
    fake = FakeBraze(VirtualTime())
    result = one(fake, body(attributes=40, events=35, poison={("attributes", 0)}, named={("attributes", 39), ("events", 34)}))
    assert result.errors == [
        ObjectError("attributes", 0, "Invalid object in request"),
        ObjectError("attributes", 39, "EMAIL_BAD_FORMAT"),
        ObjectError("events", 34, "EMAIL_BAD_FORMAT"),
    ]
    # Halves keep Braze's processing order: attributes before events.
    for doc in fake.bodies():
        assert list(doc) == [array for array in ARRAYS if array in doc]


def test_400_naming_every_object_rejects_them_without_splitting():
    errors = [{"type": "BLACKLISTED_EXTERNAL_USER_ID", "input_array": "attributes", "index": i} for i in range(3)]
    fake = FakeBraze(VirtualTime(), script=[httpx.Response(400, json={"message": "no valid object", "errors": errors})])
    result = one(fake, body(attributes=3))
    assert result.errors == [ObjectError("attributes", i, "BLACKLISTED_EXTERNAL_USER_ID") for i in range(3)]
    assert len(fake.requests) == 1


def test_400_naming_some_objects_splits_to_find_the_rest():
    errors = [{"type": "BAD_DEVICE_ID", "input_array": "attributes", "index": 0}]
    fake = FakeBraze(VirtualTime(), script=[httpx.Response(400, json={"message": "bad", "errors": errors})])
    result = one(fake, body(attributes=4, poison={("attributes", 0)}))
    assert result.errors == [ObjectError("attributes", 0, "Invalid object in request")]
    assert len(fake.requests) > 1 and set(fake.processed) == objects(4) - {("attributes", 0)}


def test_413_splits_until_bodies_fit_and_rejects_a_single_oversized_object():
    def small_only(doc: dict) -> httpx.Response:
        size = sum(len(doc.get(array, ())) for array in ARRAYS)
        too_big = size > 10 or any(obj["poison"] for array in ARRAYS for obj in doc.get(array, ()))
        return httpx.Response(413) if too_big else created()

    fake = FakeBraze(VirtualTime(), default=small_only)
    result = one(fake, body(attributes=75, poison={("attributes", 7)}))
    assert result.errors == [ObjectError("attributes", 7, "413: request body too large")]
    assert set(fake.processed) == objects(75) - {("attributes", 7)}
    assert set(fake.processed.values()) == {1}


@pytest.mark.parametrize("status", [401, 403, 404])
def test_config_errors_stop_the_run_with_a_clear_message_and_no_key(status):
    fake = FakeBraze(VirtualTime(), default=httpx.Response(status, json={"message": f"nope {KEY}"}))
    with pytest.raises(BrazeConfigError) as caught:
        load(fake, [BatchRequest(n, body(attributes=2)) for n in range(50)], concurrency=4)
    message = str(caught.value)
    assert caught.value.status == status
    assert f"({status})" in message and "BRAZE_API_KEY" in message and "BRAZE_REST_ENDPOINT" in message
    assert KEY not in message and "\n" not in message
    assert len(fake.requests) <= 4


def test_429_then_success_waits_until_reset_given_as_epoch():
    vt = VirtualTime()
    reset = int(vt.wall()) + 3
    fake = FakeBraze(vt, script=[httpx.Response(429, headers={"X-RateLimit-Reset": str(reset), "X-RateLimit-Remaining": "0"})])
    result = one(fake, body(attributes=5))
    assert result.status == "acknowledged" and result.throttled == 1 and result.retries == 0
    assert result.status_codes == {"429": 1, "201": 1}
    assert VirtualTime.EPOCH0 + fake.requests[1][0] >= reset


@pytest.mark.parametrize(
    "headers",
    [{"X-RateLimit-Reset": "5"}, {"x-ratelimit-retry-after": "5"}, {"Retry-After": "5"}, {"RETRY-AFTER": "5"}],
)
def test_429_then_success_waits_for_the_announced_seconds(headers):
    fake = FakeBraze(VirtualTime(), script=[httpx.Response(429, headers=headers)])
    result = one(fake, body(attributes=5))
    assert result.status == "acknowledged" and result.throttled == 1
    assert fake.requests[1][0] - fake.requests[0][0] >= 5


def test_429s_do_not_use_up_attempts_but_are_bounded_in_time():
    throttled = httpx.Response(429, headers={"Retry-After": "2"})
    fake = FakeBraze(VirtualTime(), script=[throttled] * 5)
    assert one(fake, body(attributes=1), max_attempts=2).status == "acknowledged"

    forever = FakeBraze(VirtualTime(), default=throttled)
    result = one(forever, body(attributes=1, events=1), max_retry_seconds=30)
    assert result.status == "pending" and result.pending == [("attributes", 0), ("events", 0)]
    assert result.in_doubt is False  # a 429 was never applied
    assert forever.vt.now <= 30 and result.throttled == len(forever.requests)


def test_429_pauses_every_concurrent_sender():
    vt = VirtualTime()
    fake = FakeBraze(vt, script=[httpx.Response(429, headers={"Retry-After": "10"})], latency=0.01)
    run = load(fake, [BatchRequest(n, body(attributes=1)) for n in range(40)], concurrency=8)
    assert run.stats.acknowledged == 40 and run.stats.throttled == 1
    times = [t for t, _, _ in fake.requests]
    # The 429 comes back at 0.01 s; from then on nobody sends until its Retry-After has passed.
    assert [t for t in times if 0.011 < t < 10] == []
    assert len([t for t in times if t >= 10]) >= 40 - 16


def test_5xx_then_success_retries_with_backoff():
    fake = FakeBraze(VirtualTime(), script=[httpx.Response(503), httpx.Response(502)])
    result = one(fake, body(attributes=5))
    assert result.status == "acknowledged" and result.retries == 2 and result.in_doubt is False
    assert result.status_codes == {"503": 1, "502": 1, "201": 1}
    gaps = [b[0] - a[0] for a, b in zip(fake.requests, fake.requests[1:])]
    assert 1 <= gaps[0] <= 2 and 2 <= gaps[1] <= 3


def test_5xx_exhausted_leaves_the_batch_pending_and_in_doubt():
    fake = FakeBraze(VirtualTime(), default=httpx.Response(500))
    result = one(fake, body(attributes=3), max_attempts=4)
    assert result.status == "pending" and result.in_doubt is True
    assert result.pending == [("attributes", 0), ("attributes", 1), ("attributes", 2)]
    assert len(fake.requests) == 4 and result.retries == 3


def test_5xx_retries_are_bounded_in_total_time():
    fake = FakeBraze(VirtualTime(), default=httpx.Response(503))
    result = one(fake, body(attributes=1), max_attempts=100, max_retry_seconds=40)
    assert result.status == "pending" and fake.vt.now < 40


def test_in_doubt_resend_policy_resends_everything_and_flags_the_batch():
    fake = FakeBraze(VirtualTime(), script=[httpx.Response(504)])
    request_body = body(attributes=2, events=2, purchases=1)
    result = one(fake, request_body, in_doubt_policy="resend")
    assert result.status == "acknowledged" and result.in_doubt is True
    assert [r.content for _, _, r in fake.requests] == [request_body, request_body]


def test_in_doubt_skip_policy_resends_attributes_only_and_leaves_events_pending():
    fake = FakeBraze(VirtualTime(), script=[httpx.Response(504)])
    result = one(fake, body(attributes=2, events=2, purchases=1, named={("attributes", 1)}), in_doubt_policy="skip")
    assert result.status == "pending" and result.in_doubt is True
    assert result.pending == [("events", 0), ("events", 1), ("purchases", 0)]
    assert result.errors == [ObjectError("attributes", 1, "EMAIL_BAD_FORMAT")]
    assert list(fake.bodies()[1]) == ["attributes"] and len(fake.bodies()[1]["attributes"]) == 2


def test_in_doubt_skip_with_nothing_but_events_sends_nothing_more():
    fake = FakeBraze(VirtualTime(), script=[httpx.Response(500)])
    result = one(fake, body(events=3))
    assert len(fake.requests) == 1
    assert result.status == "pending" and result.in_doubt is True and result.pending == sorted(objects(0, 3))


def test_in_doubt_request_starts_in_that_state():
    skip = FakeBraze(VirtualTime())
    result = one(skip, body(attributes=2, events=1), in_doubt_policy="skip")
    assert result.status == "acknowledged"  # nothing in doubt without the flag
    resumed = FakeBraze(VirtualTime())
    run = load(resumed, [BatchRequest(0, body(attributes=2, events=1), in_doubt=True)], in_doubt_policy="skip")
    assert list(resumed.bodies()[0]) == ["attributes"]
    assert run.results[0].pending == [("events", 0)] and run.results[0].in_doubt is True

    resend = FakeBraze(VirtualTime())
    run = load(resend, [BatchRequest(0, body(attributes=2, events=1), in_doubt=True)], in_doubt_policy="resend")
    assert list(resend.bodies()[0]) == ["attributes", "events"]
    assert run.results[0].status == "acknowledged" and run.results[0].in_doubt is True


def test_in_doubt_events_only_request_with_skip_is_reported_without_sending():
    fake = FakeBraze(VirtualTime())
    run = load(fake, [BatchRequest(0, body(events=2), in_doubt=True)])
    assert fake.requests == [] and run.results[0].pending == [("events", 0), ("events", 1)]
    assert [entry[0] for entry in run.log] == ["result"]


def test_timeouts_are_retried_and_may_have_applied():
    fake = FakeBraze(VirtualTime(), script=[httpx.ReadTimeout("slow"), httpx.WriteTimeout("slow")])
    result = one(fake, body(attributes=1, events=1))
    assert result.status == "pending" and result.in_doubt is True and result.pending == [("events", 0)]
    assert result.status_codes == {"timeout": 2, "201": 1} and result.retries == 2


def caused_by(error: Exception, cause: Exception) -> Exception:
    """An httpx error as httpx-aiohttp raises it: `raise mapped(message) from aiohttp_error`."""
    error.__cause__ = cause
    return error


@pytest.mark.parametrize(
    "error",
    [
        httpx.ReadError("reset"),
        httpx.RemoteProtocolError("eof"),
        httpx.WriteError("pipe"),
        caused_by(httpx.ConnectTimeout("disconnected"), aiohttp.ServerDisconnectedError()),
    ],
)
def test_broken_connections_are_retried_and_may_have_applied(error):
    fake = FakeBraze(VirtualTime(), script=[error])
    result = one(fake, body(attributes=1, purchases=1))
    assert result.in_doubt is True and result.pending == [("purchases", 0)]
    assert result.status_codes == {"connection": 1, "201": 1}


@pytest.mark.parametrize(
    "error",
    [
        httpx.ConnectError("refused"),
        httpx.ConnectTimeout("no answer to SYN"),
        httpx.PoolTimeout("no free connection"),
        caused_by(httpx.ConnectError("refused"), aiohttp.ClientConnectorError(None, OSError(111, "refused"))),
    ],
)
def test_a_connection_never_opened_is_retried_and_not_in_doubt(error):
    fake = FakeBraze(VirtualTime(), script=[error, error])
    result = one(fake, body(attributes=1, events=1))
    assert result.status == "acknowledged" and result.in_doubt is False and result.retries == 2
    assert result.status_codes == {"connect": 2, "201": 1}
    assert list(fake.bodies()[0]) == ["attributes", "events"]


def test_unexpected_status_leaves_the_batch_pending_without_resending():
    fake = FakeBraze(VirtualTime(), default=httpx.Response(418))
    result = one(fake, body(attributes=2))
    assert result.status == "pending" and result.in_doubt is False and len(fake.requests) == 1


def test_on_sending_is_called_before_the_first_request_of_each_batch():
    fake = FakeBraze(VirtualTime(), script=[httpx.Response(503)], latency=0.01)
    run = load(fake, [BatchRequest(n, body(attributes=1, batch=n)) for n in range(20)], concurrency=4)
    first_request = {}
    for position, (_, doc, _) in enumerate(fake.requests):
        first_request.setdefault(int(doc["attributes"][0]["external_id"].split("-")[0][1:]), position)
    announced = {batch_no: seen for kind, batch_no, seen in run.log if kind == "sending"}
    assert sorted(announced) == list(range(20))
    for batch_no, requests_seen in announced.items():
        assert requests_seen <= first_request[batch_no]  # the server had not seen this batch yet
    order = [(kind, batch_no) for kind, batch_no, _ in run.log]
    assert all(order.index(("sending", n)) < order.index(("result", n)) for n in range(20))


def test_concurrency_is_bounded_and_used():
    fake = FakeBraze(VirtualTime(), latency=0.05)
    run = load(fake, [BatchRequest(n, body(attributes=1)) for n in range(200)], concurrency=12)
    assert run.stats.acknowledged == 200 and fake.max_active == 12


def test_load_stays_within_braze_windows_and_sustains_the_limit():
    """A fake Braze counting in fixed 3 s windows aligned to the epoch; it answers 429 above 1,000."""
    vt = VirtualTime()
    windows: Counter = Counter()

    def braze_window(doc: dict) -> httpx.Response:
        window = int(vt.wall() // 3)
        windows[window] += 1
        remaining = 1000 - windows[window]
        headers = {"X-RateLimit-Limit": "1000", "X-RateLimit-Remaining": str(max(0, remaining)),
                   "X-RateLimit-Reset": str((window + 1) * 3)}
        return created(headers=headers) if remaining >= 0 else httpx.Response(429, headers=headers)

    fake = FakeBraze(vt, default=braze_window, latency=0.02)
    run = load(fake, [BatchRequest(n, body(attributes=1)) for n in range(3000)], rate="1000/3s", concurrency=32)
    assert run.stats.acknowledged == 3000 and run.stats.throttled == 0
    assert max(windows.values()) <= 1000
    full = [count for window, count in windows.items() if min(windows) < window < max(windows)]
    assert full and min(full) >= 950


def test_async_batches_and_async_callbacks():
    fake = FakeBraze(VirtualTime())
    seen: list[int] = []

    async def batches():
        for n in range(10):
            yield BatchRequest(n, body(attributes=1))

    async def on_sending(batch_no: int) -> None:
        await asyncio.sleep(0.001)

    async def on_result(result) -> None:
        seen.append(result.batch_no)

    loader = loader_for(fake, concurrency=3)
    stats = fake.vt.run(loader.run(batches(), on_sending, on_result))
    assert sorted(seen) == list(range(10)) and stats.batches == 10


def test_stop_finishes_in_flight_batches_and_starts_no_new_one():
    fake = FakeBraze(VirtualTime(), latency=0.5)
    loader = loader_for(fake, concurrency=4)
    sending: list[int] = []
    results: list = []

    def on_result(result) -> None:
        results.append(result)
        loader.stop()

    stats = fake.vt.run(loader.run((BatchRequest(n, body(attributes=1)) for n in range(100)), sending.append, on_result))
    assert sorted(sending) == [0, 1, 2, 3] == sorted(r.batch_no for r in results)
    assert all(r.status == "acknowledged" for r in results) and stats.batches == 4 and loader.in_flight == []


def test_stop_during_retries_reports_the_rest_as_pending():
    fake = FakeBraze(VirtualTime(), default=httpx.Response(503))
    loader = loader_for(fake, concurrency=1)
    results: list = []

    async def main():
        task = asyncio.create_task(loader.run([BatchRequest(0, body(attributes=1))], lambda n: None, results.append))
        await asyncio.sleep(5)
        loader.stop()
        return await task

    fake.vt.run(main())
    assert results[0].status == "pending" and results[0].in_doubt is True and fake.vt.now < 60


def test_cancellation_abandons_in_flight_batches_and_reports_them():
    fake = FakeBraze(VirtualTime(), latency=100)
    loader = loader_for(fake, concurrency=3)
    results: list = []

    async def main():
        task = asyncio.create_task(loader.run([BatchRequest(n, body(attributes=1)) for n in range(10)], lambda n: None, results.append))
        await asyncio.sleep(1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    fake.vt.run(main())
    assert results == [] and loader.in_flight == [0, 1, 2] and loader.stats.abandoned == [0, 1, 2]


def test_a_failing_callback_stops_the_run():
    fake = FakeBraze(VirtualTime())

    def on_sending(batch_no: int) -> None:
        if batch_no == 3:
            raise OSError("ledger is read-only")

    loader = loader_for(fake, concurrency=1)
    with pytest.raises(OSError, match="read-only"):
        fake.vt.run(loader.run([BatchRequest(n, body(attributes=1)) for n in range(10)], on_sending, lambda r: None))
    assert len(fake.requests) == 3


def test_the_key_never_reaches_logs_reprs_or_exceptions(caplog):
    fake = FakeBraze(VirtualTime(), script=[httpx.Response(500), httpx.ReadTimeout(f"timeout {KEY}"),
                                            httpx.Response(429)], default=httpx.Response(401))
    with caplog.at_level(logging.DEBUG), pytest.raises(BrazeConfigError) as caught:
        load(fake, [BatchRequest(n, body(attributes=1)) for n in range(3)], concurrency=1)
    run_text = caplog.text + repr(caught.value) + str(caught.value.__cause__ or "") + str(caught.value.__context__ or "")
    assert KEY not in run_text and "user-0" not in run_text and "b0-" not in run_text
    loader = BrazeLoader(ENDPOINT, KEY, rate=parse_rate("3000/3s"))
    assert KEY not in repr(loader) and KEY not in str(vars(loader))


def test_bad_settings_name_the_variable_to_fix():
    with pytest.raises(BrazeConfigError, match="BRAZE_REST_ENDPOINT"):
        BrazeLoader("rest.iad-01.braze.com", KEY, rate=parse_rate("3000/3s"))
    with pytest.raises(BrazeConfigError, match="BRAZE_API_KEY"):
        BrazeLoader(ENDPOINT, " ", rate=parse_rate("3000/3s"))
    with pytest.raises(ValueError, match="in_doubt_policy"):
        BrazeLoader(ENDPOINT, KEY, rate=parse_rate("3000/3s"), in_doubt_policy="maybe")


def test_a_secret_str_key_is_accepted():
    class Secret:
        def get_secret_value(self) -> str:
            return KEY

    fake = FakeBraze(VirtualTime())
    loader = BrazeLoader(ENDPOINT, Secret(), rate=parse_rate("3000/3s"), transport=httpx.MockTransport(fake))
    fake.vt.run(loader.run([BatchRequest(0, body(attributes=1))], lambda n: None, lambda r: None))
    assert fake.requests[0][2].headers["Authorization"] == f"Bearer {KEY}"


def test_a_body_that_cannot_be_split_is_a_planner_bug():
    fake = FakeBraze(VirtualTime(), default=httpx.Response(400, json={"message": "bad JSON"}))
    with pytest.raises(BrazeBodyError):
        load(fake, [BatchRequest(0, b"not json")])


def test_stats_add_up():
    fake = FakeBraze(VirtualTime(), script=[httpx.Response(503), httpx.Response(429, headers={"Retry-After": "1"})])
    run = load(fake, [BatchRequest(n, body(attributes=1, events=1)) for n in range(6)], concurrency=1)
    stats = run.stats
    assert stats.batches == 6 and stats.requests == 8 and stats.retries == 1 and stats.throttled == 1
    assert stats.status_codes == {"503": 1, "429": 1, "201": 6}
    assert stats.in_doubt == [0] and stats.pending == 1 and stats.acknowledged == 5


def test_run_sync_runs_a_whole_load():
    fake = FakeBraze(VirtualTime())
    loader = BrazeLoader(ENDPOINT, KEY, rate=parse_rate("3000/3s"), transport=httpx.MockTransport(fake))
    results: list = []
    stats = loader.run_sync([BatchRequest(n, body(attributes=2)) for n in range(5)], lambda n: None, results.append)
    assert stats.acknowledged == 5 and len(results) == 5


def test_a_transport_factory_is_opened_per_run_and_closed_an_instance_is_left_open():
    closed: list = []

    class Closing(httpx.MockTransport):
        async def aclose(self) -> None:
            closed.append(self)

    fake = FakeBraze(VirtualTime())
    factory_loader = loader_for(fake, transport=lambda: Closing(fake))
    for _ in range(2):
        fake.vt.run(factory_loader.run([BatchRequest(0, body(attributes=1))], lambda n: None, lambda r: None))
    assert len(closed) == 2 and closed[0] is not closed[1]
    instance = Closing(fake)
    fake.vt.run(loader_for(fake, transport=instance).run(
        [BatchRequest(0, body(attributes=1))], lambda n: None, lambda r: None))
    assert instance not in closed


def test_progress_is_logged_per_thousand_batches_not_per_request(caplog):
    fake = FakeBraze(VirtualTime())
    with caplog.at_level(logging.INFO, logger="connectors.braze"):
        load(fake, [BatchRequest(n, body(attributes=1)) for n in range(2500)], rate="100000/1s", concurrency=32)
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 3 and lines[-1].startswith("Braze load done: 2500 batches")
