"""Braze's users endpoints that change identities (`/users/identify`, `/users/external_ids/rename`,
`/users/external_ids/remove`): one JSON request per batch under the endpoint's own rate limit, sent through
`connectors.braze.single.send_one` (the track client's one retry layer, rate limiter and outcome classifier)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx
import orjson

from connectors.braze.outcomes import BrazeConfigError, BrazeError, BrazeRejected
from connectors.braze.ratelimit import RateLimiter, parse_rate
from connectors.braze.single import Counts, send_one
from connectors.states import RequestState


@dataclass
class RequestResult:
    """One request's outcome: `acknowledged` (Braze answered success, `answer` is its body), `rejected` (a 400:
    not retried) or `pending` (no answer within the retry budget)."""

    status: str
    reason: str | None = None
    answer: dict = field(default_factory=dict)
    requests: int = 0
    retries: int = 0
    throttled: int = 0


class UsersRequestClient:
    """Send request bodies to one users endpoint (`path`). `rate` like `1000/60s`; `transport` for tests only."""

    def __init__(self, endpoint: str, api_key: str, *, path: str, rate: str, max_attempts: int = 6,
                 max_seconds: float = 300.0, timeout: float = 30.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.url = endpoint.rstrip("/") + path
        self.headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
        self.limiter = RateLimiter(parse_rate(rate))
        self.max_attempts, self.max_seconds, self.timeout = max_attempts, max_seconds, timeout
        self.transport = transport
        self.stopped = threading.Event()

    def send_all(self, batches: Sequence[tuple[int, dict]], on_sending, on_result) -> None:
        """Send each (batch_no, body) in order; `on_sending(batch_no)` runs (and must persist) before the
        request leaves, `on_result(batch_no, RequestResult)` after. A configuration error (bad key, wrong host)
        stops the whole loop: it is raised after the batch that met it is recorded as pending."""
        asyncio.run(self._run(batches, on_sending, on_result))

    async def _run(self, batches, on_sending, on_result) -> None:
        async with httpx.AsyncClient(timeout=self.timeout, transport=self.transport) as http:
            for batch_no, body in batches:
                on_sending(batch_no)
                result, fatal = await self._send(http, orjson.dumps(body))
                on_result(batch_no, result)
                if fatal is not None:
                    raise fatal

    async def _send(self, http: httpx.AsyncClient, body: bytes) -> tuple[RequestResult, BrazeError | None]:
        result, counts, fatal = RequestResult(RequestState.PENDING), Counts(), None
        try:
            answer = await send_one(http, "POST", self.url, body, self.headers, self.limiter, counts,
                                    max_attempts=self.max_attempts, max_seconds=self.max_seconds,
                                    stopped=self.stopped)
            result.status, result.answer = RequestState.ACKNOWLEDGED, answer if isinstance(answer, dict) else {}
        except BrazeRejected as exc:
            result.status, result.reason = RequestState.REJECTED, str(exc)
        except BrazeConfigError as exc:
            result.reason, fatal = str(exc), exc
        except BrazeError as exc:
            result.reason = str(exc)
        result.requests, result.retries, result.throttled = counts.requests, counts.retries, counts.throttled
        return result, fatal
