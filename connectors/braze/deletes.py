"""`POST /users/delete`: up to 50 users per request (one identifier kind each), with its own rate limit.

Reuses the track client's pieces rather than copying them: the one retry layer (`braze_retrying`,
transient errors only, bounded in attempts and time), the rate limiter (a sliding-window budget plus
Braze's headers and 429 pauses) and the outcome classifier (only Braze's success shape acknowledges).
Deleting is idempotent in Braze (an unknown id is not an error), so a request whose answer was lost can
be sent again: "in doubt" here never means "may double".
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import httpx
import orjson

from connectors.braze.outcomes import (
    BrazeConfigError,
    BrazeError,
    BrazeRejected,
)
from connectors.braze.ratelimit import RateLimiter, parse_rate
from connectors.braze.single import Counts, send_one
from connectors.states import RequestState
from transforms.identity import request_identifier

PATH = "/users/delete"
MAX_IDS = 50
_FIELDS = {"external_id": "external_ids", "user_alias": "user_aliases", "email": "email_addresses",
           "phone": "phone_numbers"}


def delete_body(keys: Sequence[str]) -> dict:
    """The request body naming these users (keys of one identifier kind, transforms/identity.py): Braze takes
    one of external_ids, user_aliases, email_addresses or phone_numbers per request."""
    named = [request_identifier(k) for k in keys]
    kinds = {kind for kind, _ in named}
    if len(kinds) != 1:
        raise ValueError(f"a delete request names one identifier kind, not {sorted(kinds)}")
    return {_FIELDS[kinds.pop()]: [value for _, value in named]}


@dataclass
class DeleteResult:
    """One request's outcome: `acknowledged` (Braze answered success), `rejected` (a 400: not retried) or
    `pending` (no answer within the retry budget; safe to send again)."""

    status: RequestState
    reason: str | None = None
    deleted: int | None = None
    requests: int = 0
    retries: int = 0
    throttled: int = 0


class DeleteClient:
    """Send delete requests to one Braze endpoint. `rate` like `20000/60s`; `transport` for tests only."""

    def __init__(self, endpoint: str, api_key: str, *, rate: str, max_attempts: int = 6, max_seconds: float = 300.0,
                 timeout: float = 30.0, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.url = endpoint.rstrip("/") + PATH
        self.headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
        self.limiter = RateLimiter(parse_rate(rate))
        self.max_attempts, self.max_seconds, self.timeout = max_attempts, max_seconds, timeout
        self.transport = transport
        self.stopped = threading.Event()

    def delete_all(self, batches: Sequence[tuple[int, list[str]]], on_sending, on_result) -> None:
        """Send each (batch_no, ids) in order; `on_sending(batch_no)` runs (and must persist) before the request
        leaves, `on_result(batch_no, DeleteResult)` after. A configuration error (bad key, wrong host) stops
        the whole loop: it is raised after the batch that met it is recorded as pending."""
        asyncio.run(self._run(batches, on_sending, on_result))

    async def _run(self, batches, on_sending, on_result) -> None:
        async with httpx.AsyncClient(timeout=self.timeout, transport=self.transport) as http:
            for batch_no, ids in batches:
                if len(ids) > MAX_IDS:
                    raise ValueError(f"batch {batch_no}: {len(ids)} ids, at most {MAX_IDS} per request")
                on_sending(batch_no)
                result, fatal = await self._send(http, ids)
                on_result(batch_no, result)
                if fatal is not None:
                    raise fatal

    async def _send(self, http: httpx.AsyncClient, ids: list[str]) -> tuple[DeleteResult, BrazeError | None]:
        result = DeleteResult(RequestState.PENDING)
        counts = Counts()
        body = orjson.dumps(delete_body(ids))
        try:
            answer = await send_one(http, "POST", self.url, body, self.headers, self.limiter, counts,
                                    max_attempts=self.max_attempts, max_seconds=self.max_seconds,
                                    stopped=self.stopped)
        except BrazeRejected as exc:
            result.status, result.reason = RequestState.REJECTED, str(exc)
            return result, None
        except BrazeConfigError as exc:
            result.reason = str(exc)
            return result, exc
        except BrazeError as exc:
            result.reason = str(exc)
            return result, None
        finally:
            result.requests, result.retries, result.throttled = counts.requests, counts.retries, counts.throttled
        result.status = RequestState.ACKNOWLEDGED
        deleted = answer.get("deleted")
        result.deleted = deleted if isinstance(deleted, int) else None
        return result, None
