"""Reading profiles back with `POST /users/export/ids` (the verify flow), classified and retried like loads.

Braze takes at most 50 external ids per call, at 250 requests per minute by default (braze-api.md,
"Reading back"); `fields_to_export` is required for workspaces created since 2024-08-22. An export only
reads, so every transient failure may be retried without doubt.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import httpx
import orjson
from tenacity import RetryCallState

from connectors.braze.outcomes import (
    BrazeError,
    BrazeThrottled,
    BrazeTransientError,
    BrazeUnexpectedStatus,
    classify,
    classify_exception,
)
from connectors.braze.ratelimit import Clock, Rate, RateLimiter, Sleep
from connectors.braze.retries import braze_retrying, with_retries
from connectors.braze.transport import (
    TRANSPORT_ERRORS,
    PostFactory,
    Transport,
    default_transport,
    open_transport,
    read_body,
    rest_base_url,
)
from transforms.identity import EMAIL, EXTERNAL_ID, PHONE, USER_ALIAS, key_of, request_identifier

EXPORT_RATE = Rate(250, 60)
MAX_IDS = 50


@dataclass(slots=True)
class ExportResult:
    """Profiles Braze returned, ids it does not know, and ids left without an answer (retries exhausted)."""

    users: list[dict] = field(default_factory=list)
    by_key: dict[str, dict] = field(default_factory=dict)  # each profile under the user key that asked for it
    invalid_user_ids: list[str] = field(default_factory=list)
    pending_ids: list[str] = field(default_factory=list)
    requests: int = 0
    retries: int = 0
    throttled: int = 0


class _Chunk:
    """≤ 50 ids being exported; carries what the retry conditions read."""

    __slots__ = ("failures", "ids", "result", "started")

    def __init__(self, ids: list[str], result: ExportResult, started: float) -> None:
        self.ids = ids
        self.result = result
        self.failures = 0
        self.started = started


class BrazeExporter:
    """`export_users(external_ids, fields)` in chunks of 50, within the export rate limit."""

    def __init__(
        self,
        endpoint: str,
        api_key: str | Any,
        *,
        rate: Rate = EXPORT_RATE,
        timeout: float = 30,
        max_attempts: int = 6,
        max_retry_seconds: float = 300,
        transport: Transport | None = None,
        clock: Clock | None = None,
        sleep: Sleep | None = None,
        wall_clock: Clock | None = None,
    ) -> None:
        self.endpoint = rest_base_url(endpoint)
        self._post = PostFactory(self.endpoint + "/users/export/ids", api_key, timeout)
        self._transport = transport or partial(default_transport, 1)
        self._clock = clock or time.monotonic
        self._sleep = sleep or asyncio.sleep
        self.limiter = RateLimiter(rate, clock=self._clock, wall_clock=wall_clock, sleep=self._sleep)
        self._retrying = braze_retrying(
            limiter=self.limiter, max_attempts=max_attempts, max_seconds=max_retry_seconds,
            clock=self._clock, stopped=threading.Event(), before_sleep=_count_retry,
        )
        self._active: httpx.AsyncBaseTransport | None = None

    def __repr__(self) -> str:
        return f"BrazeExporter(endpoint={self.endpoint!r}, rate='{self.limiter.rate}')"

    async def export_users(self, external_ids: Iterable[str], fields: Sequence[str]) -> ExportResult:
        """Profiles of `external_ids` (user keys, transforms/identity.py) with `fields`; 400 raises BrazeRejected,
        401/403/404 BrazeConfigError. External ids and aliases go up to 50 per request; an email or a phone
        one per request (the endpoint takes a single `email_address` or `phone`)."""
        if not fields:
            raise ValueError("fields_to_export is required (Braze workspaces created since 2024-08-22)")
        ids = list(dict.fromkeys(external_ids))
        listed = [k for k in ids if request_identifier(k)[0] in (EXTERNAL_ID, USER_ALIAS)]
        singles = [k for k in ids if request_identifier(k)[0] not in (EXTERNAL_ID, USER_ALIAS)]
        result = ExportResult()
        self._active, owned = open_transport(self._transport)
        try:
            for start in range(0, len(listed), MAX_IDS):
                await self._export_chunk(_Chunk(listed[start:start + MAX_IDS], result, self._clock()), list(fields))
            for key in singles:
                await self._export_chunk(_Chunk([key], result, self._clock()), list(fields))
        finally:
            if owned:
                await self._active.aclose()
            self._active = None
        return result

    def export_users_sync(self, external_ids: Iterable[str], fields: Sequence[str]) -> ExportResult:
        """`export_users` in a fresh event loop."""
        return asyncio.run(self.export_users(external_ids, fields))

    async def _export_chunk(self, chunk: _Chunk, fields: list[str]) -> None:
        body = orjson.dumps(_export_body(chunk.ids, fields))
        try:
            doc = await with_retries(self._retrying, self._sleep, self._attempt, chunk, body)
        except (BrazeTransientError, BrazeUnexpectedStatus):
            chunk.result.pending_ids.extend(chunk.ids)
            return
        users = [u for u in doc.get("users") or [] if isinstance(u, dict)]
        chunk.result.users.extend(users)
        chunk.result.by_key.update(_by_key(chunk.ids, users))
        chunk.result.invalid_user_ids.extend(doc.get("invalid_user_ids") or [])

    async def _attempt(self, chunk: _Chunk, body: bytes) -> dict:
        """One export request: wait for the limiter, POST, classify."""
        await self.limiter.acquire()
        chunk.result.requests += 1
        try:
            response = await self._active.handle_async_request(self._post(body))
            content = await read_body(response)
        except TRANSPORT_ERRORS as exc:
            raise self._failed(chunk, classify_exception(exc)) from None
        self.limiter.observe(response.status_code, response.headers)
        try:
            classify(response.status_code, content)
        except BrazeError as error:
            raise self._failed(chunk, error) from None
        try:
            doc = orjson.loads(content)
        except orjson.JSONDecodeError:
            raise BrazeUnexpectedStatus(response.status_code) from None
        if not isinstance(doc, dict):
            raise BrazeUnexpectedStatus(response.status_code)
        return doc

    @staticmethod
    def _failed(chunk: _Chunk, error: BrazeError) -> BrazeError:
        if isinstance(error, BrazeThrottled):
            chunk.result.throttled += 1
        elif isinstance(error, BrazeTransientError):
            chunk.failures += 1
        return error


def _export_body(keys: list[str], fields: list[str]) -> dict:
    """`external_ids` and `user_aliases` (several keys), or one `email_address` or `phone`."""
    named = [request_identifier(k) for k in keys]
    body: dict = {}
    if len(named) == 1 and named[0][0] in (EMAIL, PHONE):
        body["email_address" if named[0][0] == EMAIL else "phone"] = named[0][1]
    else:
        if ids := [v for kind, v in named if kind == EXTERNAL_ID]:
            body["external_ids"] = ids
        if aliases := [v for kind, v in named if kind == USER_ALIAS]:
            body["user_aliases"] = aliases
            fields = [*fields, "user_aliases"] if "user_aliases" not in fields else fields
    body["fields_to_export"] = fields
    return body


def _by_key(keys: list[str], users: list[dict]) -> dict[str, dict]:
    """Which asked-for key each returned profile answers: its external_id, one of its aliases, or the single
    email or phone the request named."""
    wanted, out = set(keys), {}
    if len(keys) == 1 and request_identifier(keys[0])[0] in (EMAIL, PHONE):
        return {keys[0]: users[0]} if users else {}
    for user in users:
        if isinstance(user.get("external_id"), str) and user["external_id"] in wanted:
            out[user["external_id"]] = user
        for alias in user.get("user_aliases") or []:
            if isinstance(alias, dict) and isinstance(alias.get("alias_name"), str) \
                    and isinstance(alias.get("alias_label"), str):
                key = key_of(USER_ALIAS, alias)
                if key in wanted:
                    out[key] = user
    return out


def _count_retry(retry_state: RetryCallState) -> None:
    """tenacity before_sleep: count resends caused by failures (429s are counted as throttled)."""
    if not isinstance(retry_state.outcome.exception(), BrazeThrottled):
        retry_state.args[0].result.retries += 1
