"""Issue 13 points 2 and 3 (client side): only Braze's documented success shape acknowledges, and every wait
for rate permits gives way to a stop within the same loop turn."""

from __future__ import annotations

import asyncio
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from connectors.braze.client import BatchRequest, BrazeLoader
from connectors.braze.export import BrazeExporter
from connectors.braze.outcomes import BrazeConfigError, BrazeEndpointError, classify
from connectors.braze.ratelimit import parse_rate
from tests.test_client import KEY, FakeBraze, body, load, loader_for
from tests.test_ratelimit import VirtualTime

HTML = b"<!doctype html><html><head><title>Sign in - Corp SSO</title></head><body>jane.doe@example.com</body></html>"


@pytest.mark.parametrize(
    ("status", "content", "headers"),
    [
        (200, HTML, {"content-type": "text/html; charset=utf-8"}),
        (201, b"", {}),
        (200, b'{"ok": true}', {"content-type": "application/json"}),
        (201, b"[1, 2]", {"content-type": "application/json"}),
        (202, b'{"message": 3}', {"content-type": "application/json"}),
    ],
)
def test_a_2xx_that_is_not_brazes_success_shape_is_an_endpoint_error_in_doubt(status, content, headers):
    with pytest.raises(BrazeEndpointError) as caught:
        classify(status, content, headers)
    error = caught.value
    assert error.may_have_applied is True and error.status == status
    text = str(error)
    assert str(status) in text and "BRAZE_REST_ENDPOINT" in text and "\n" not in text
    assert (headers.get("content-type", "no content type").split(";")[0]) in text
    assert "jane.doe" not in text and "example.com" not in text
    assert isinstance(error, BrazeConfigError)  # the run stops, exit 2 with one line


def test_brazes_success_shape_still_acknowledges_and_reads_errors():
    assert classify(201, b'{"message":"success","attributes_processed":2}') == []
    errors = classify(201, b'{"message":"success","errors":[{"type":"EMAIL_BAD_FORMAT","input_array":"attributes","index":1}]}')
    assert [(e.array, e.index, e.reason) for e in errors] == [("attributes", 1, "EMAIL_BAD_FORMAT")]


def test_a_redirect_shows_its_target_without_credentials_and_is_not_in_doubt():
    with pytest.raises(BrazeEndpointError) as caught:
        classify(301, b"", {"Location": "https://user:pw@rest.iad-01.braze.com/users/track?token=abc#x"})
    error = caught.value
    assert error.may_have_applied is False
    assert "301" in str(error) and "redirected to https://rest.iad-01.braze.com/users/track" in str(error)
    assert "pw" not in str(error) and "token" not in str(error)


def test_an_html_answer_acknowledges_nothing_holds_events_in_doubt_and_stops_the_run():
    page = httpx.Response(200, content=HTML, headers={"content-type": "text/html"})
    fake = FakeBraze(VirtualTime(), default=page)
    batches = [BatchRequest(n, body(attributes=2, events=1, batch=n)) for n in range(50)]
    with pytest.raises(BrazeEndpointError) as caught:
        load(fake, batches, concurrency=4)
    assert "200" in str(caught.value) and "text/html" in str(caught.value) and KEY not in str(caught.value)
    # Nothing is acknowledged, and the run stopped after the requests already on their way.
    assert len(fake.requests) <= 4


def test_an_html_answer_records_each_started_batch_as_pending():
    page = httpx.Response(200, content=HTML, headers={"content-type": "text/html"})
    fake = FakeBraze(VirtualTime(), default=page, latency=0.5)  # both requests are on their way
    loader = loader_for(fake, concurrency=2)
    results = []
    with pytest.raises(BrazeEndpointError):
        fake.vt.run(loader.run([BatchRequest(n, body(attributes=1, events=1, batch=n)) for n in range(2)],
                               lambda n: None, results.append))
    assert sorted(r.batch_no for r in results) == [0, 1]
    assert all(r.status == "pending" and r.in_doubt and len(r.pending) == 2 for r in results)


def test_a_redirect_leaves_the_batch_pending_and_not_in_doubt():
    fake = FakeBraze(VirtualTime(), default=httpx.Response(301, headers={"Location": "https://rest.example.braze.com/"}))
    loader = loader_for(fake, concurrency=1)
    results = []
    with pytest.raises(BrazeEndpointError, match="redirected"):
        fake.vt.run(loader.run([BatchRequest(0, body(attributes=1, events=2))], lambda n: None, results.append))
    assert results[0].status == "pending" and results[0].in_doubt is False and len(fake.requests) == 1


class _LoginPage(BaseHTTPRequestHandler):
    """A corporate proxy's login page: 200 text/html to every POST."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(HTML)))
        self.end_headers()
        self.wfile.write(HTML)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def login_page():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _LoginPage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_login_page_over_real_http_is_never_an_acknowledgement(login_page):
    loader = BrazeLoader(login_page, KEY, rate=parse_rate("3000/3s"), concurrency=2)
    results = []
    with pytest.raises(BrazeEndpointError) as caught:
        loader.run_sync([BatchRequest(n, body(attributes=1, batch=n)) for n in range(10)], lambda n: None, results.append)
    assert results and all(r.status == "pending" for r in results)
    assert "Sign in" in str(caught.value) and "jane.doe" not in str(caught.value)


def test_the_export_endpoint_refuses_a_login_page_too(login_page):
    exporter = BrazeExporter(login_page, KEY)
    with pytest.raises(BrazeEndpointError):
        exporter.export_users_sync(["u1"], ["external_id"])


def test_stop_while_waiting_for_rate_permits_returns_at_once():
    """A spent window (1 request per hour) makes the second batch wait; stop() ends that wait, not the hour."""
    fake = FakeBraze(VirtualTime())
    loader = loader_for(fake, rate="1/3600s", concurrency=1)
    results = []

    async def main():
        task = asyncio.create_task(loader.run([BatchRequest(n, body(attributes=1, batch=n)) for n in range(3)],
                                              lambda n: None, results.append))
        await asyncio.sleep(5)
        loader.stop()
        return await task

    stats = fake.vt.run(main())
    assert fake.vt.now < 10 and len(fake.requests) == 1
    assert [r.batch_no for r in results] == [0] and stats.batches == 1 and loader.in_flight == []


def test_stop_during_a_429_pause_returns_at_once_and_leaves_the_batch_unsent():
    throttled = httpx.Response(429, headers={"X-Ratelimit-Retry-After": "3000"})
    fake = FakeBraze(VirtualTime(), default=throttled)
    loader = loader_for(fake, concurrency=1, max_retry_seconds=7200)
    results = []

    async def main():
        task = asyncio.create_task(loader.run([BatchRequest(0, body(attributes=1, events=1))], lambda n: None,
                                              results.append))
        await asyncio.sleep(5)
        loader.stop()
        return await task

    fake.vt.run(main())
    assert fake.vt.now < 10 and len(fake.requests) == 1
    # A 429 was never applied: pending, not in doubt.
    assert results[0].status == "pending" and results[0].in_doubt is False


def test_stop_from_another_thread_interrupts_a_wait():
    fake = FakeBraze(VirtualTime())
    loader = loader_for(fake, rate="1/3600s", concurrency=2)
    results = []

    async def main():
        task = asyncio.create_task(loader.run([BatchRequest(n, body(attributes=1, batch=n)) for n in range(4)],
                                              lambda n: None, results.append))
        await asyncio.sleep(1)
        other = threading.Thread(target=loader.stop)  # as a Prefect cancellation or a worker thread would
        other.start()
        other.join()
        return await task

    fake.vt.run(main())
    assert [r.batch_no for r in results] == [0] and fake.vt.now < 10
