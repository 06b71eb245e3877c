"""Braze catalogs over HTTP: `GET /catalogs` (fields and types) and the asynchronous item endpoints
`POST|PATCH|DELETE /catalogs/{catalog_name}/items`, at most 50 items per request.

Pages: braze.com/docs/api/endpoints/catalogs/catalog_management/synchronous/get_list_catalogs and
catalog_items/asynchronous/{post_create,patch,delete}_catalog_items_bulk. The item endpoints answer 202
`{"message": "success"}` (queued), 400 with `errors[{id, message}]` for a request Braze refuses whole, 404 for
an unknown catalog; they share 16,000 requests per minute. Requests go through connectors/braze/single.py (the
track client's one retry layer, a rate limiter and the outcome classifier). Writing items is idempotent, so a
request whose answer was lost is sent again.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import httpx
import orjson

from connectors.braze.outcomes import BrazeConfigError, BrazeError, BrazeRejected
from connectors.braze.ratelimit import RateLimiter, parse_rate
from connectors.braze.single import Counts, send_one
from connectors.states import RequestState

MAX_ITEMS = 50
RATE = "16000/60s"  # shared by every asynchronous catalog item endpoint
LIST_RATE = "50/60s"  # shared by the synchronous catalog endpoints (GET /catalogs among them)


@dataclass
class ItemsResult:
    """One request's outcome: `acknowledged` (202), `rejected` (400: Braze refused it whole; `reason` names
    Braze's error id) or `pending` (no answer within the retry budget; safe to send again)."""

    status: str
    reason: str | None = None
    requests: int = 0
    throttled: int = 0


class CatalogClient:
    """Catalog requests to one Braze endpoint. `rate` like `16000/60s`; `transport` for tests only."""

    def __init__(self, endpoint: str, api_key: str, *, rate: str = RATE, max_attempts: int = 6,
                 max_seconds: float = 300.0, timeout: float = 30.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.base = endpoint.rstrip("/")
        self.headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
        self.limiter = RateLimiter(parse_rate(rate))
        self.list_limiter = RateLimiter(parse_rate(LIST_RATE))  # its own budget and headers: another limit
        self.max_attempts, self.max_seconds, self.timeout = max_attempts, max_seconds, timeout
        self.transport = transport
        self.stopped = threading.Event()

    def list_fields(self) -> dict[str, list[dict]]:
        """{catalog name: its fields [{name, type}]} from GET /catalogs; BrazeConfigError for a bad key or URL."""
        async def run() -> dict:
            async with httpx.AsyncClient(timeout=self.timeout, transport=self.transport) as http:
                return await self._request(http, "GET", "/catalogs", None, ItemsResult(RequestState.PENDING), self.list_limiter)

        try:
            answer = asyncio.run(run())
        except BrazeRejected as exc:
            raise BrazeConfigError(400, what=f"refused GET /catalogs ({exc})") from None
        return {c["name"]: list(c.get("fields") or []) for c in answer.get("catalogs") or []
                if isinstance(c, dict) and isinstance(c.get("name"), str)}

    def send_all(self, catalog: str, batches: Sequence[tuple[int, str, bytes]],
                 on_sending: Callable[[int], None], on_result: Callable[[int, ItemsResult], None]) -> None:
        """Send each (batch_no, method, body) in order; `on_sending(batch_no)` runs (and must persist) before the
        request leaves, `on_result(batch_no, ItemsResult)` after. A configuration error (bad key, wrong host,
        unknown catalog) stops the loop: it is raised after the batch that met it is recorded as pending."""
        asyncio.run(self._send_all(catalog, batches, on_sending, on_result))

    async def _send_all(self, catalog, batches, on_sending, on_result) -> None:
        path = f"/catalogs/{catalog}/items"
        async with httpx.AsyncClient(timeout=self.timeout, transport=self.transport) as http:
            for batch_no, method, body in batches:
                on_sending(batch_no)
                result = ItemsResult(RequestState.PENDING)
                fatal = None
                try:
                    await self._request(http, method, path, body, result, self.limiter)
                    result.status = RequestState.ACKNOWLEDGED
                except BrazeRejected as exc:
                    result.status, result.reason = RequestState.REJECTED, exc.braze_message
                except BrazeConfigError as exc:
                    result.reason, fatal = str(exc), exc
                except BrazeError as exc:
                    result.reason = str(exc)
                on_result(batch_no, result)
                if fatal is not None:
                    raise fatal

    async def _request(self, http: httpx.AsyncClient, method: str, path: str, body: bytes | None,
                       result: ItemsResult, limiter: RateLimiter) -> dict:
        counts = Counts()
        try:
            return await send_one(http, method, self.base + path, body, self.headers, limiter, counts,
                                  max_attempts=self.max_attempts, max_seconds=self.max_seconds, stopped=self.stopped,
                                  refuse=_refused)
        finally:
            result.requests, result.throttled = result.requests + counts.requests, result.throttled + counts.throttled


def _refused(response: httpx.Response) -> None:
    """A 400 names Braze's error ids (`request-includes-too-many-items`, ...): the reason kept for the batch."""
    if response.status_code == 400:
        raise BrazeRejected([], _error_ids(response.content))


def _error_ids(content: bytes) -> str:
    """Braze's error ids of a refused request (`request-includes-too-many-items`, ...), never item values."""
    try:
        doc = orjson.loads(content)
    except orjson.JSONDecodeError:
        return "400 Bad Request"
    errors = doc.get("errors") if isinstance(doc, dict) else None
    ids = [str(e.get("id"))[:80] for e in errors or [] if isinstance(e, dict) and e.get("id")]
    return ", ".join(ids) or "400 Bad Request"
