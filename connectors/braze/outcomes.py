"""Result records and exception family of Braze requests, and the one place that classifies HTTP outcomes.

Exceptions carry structured fields (status, batch number) and a marker, transient or terminal, that the
loader dispatches on (the dlt pattern). Their text never holds request bodies, Braze's messages (which may
echo personal data), identifiers, tokens or the API key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar, NamedTuple
from urllib.parse import urlsplit

import aiohttp
import httpx
import orjson

from connectors.states import BatchState

ARRAYS = ("attributes", "events", "purchases")
REASON_MAX = 500
# How much of an answer that is not Braze's is shown to the user (after redaction): enough to recognise a
# login page or a proxy's banner, too little to carry a payload.
SHOWN_BYTES = 60
# Redacted from the bytes shown: e-mail addresses, bearer tokens, and long runs of letters and digits (keys,
# push tokens, phone numbers), so an echoing proxy cannot leak a secret or personal value into a message.
_SECRETS = re.compile(rb"[\w.+-]+@[\w-]+(?:\.[\w-]+)+|bearer\s+\S+|[A-Za-z0-9_\-+/=]{16,}|\+?\d[\d\s().-]{6,}\d", re.IGNORECASE)
# Transport failures raised before any byte of the request left: connecting, or waiting for a connection.
NOT_SENT = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    aiohttp.ClientConnectorError,
    aiohttp.ConnectionTimeoutError,
)

Status = BatchState  # acknowledged | pending: a batch result is final


@dataclass(frozen=True, slots=True)
class ObjectError:
    """One object Braze rejected: its array and index in the batch *as planned*, and Braze's reason."""

    array: str
    index: int
    reason: str


@dataclass(slots=True)
class BatchResult:
    """Final outcome of one planned batch.

    `acknowledged`: Braze answered for every object (processed, or rejected with a reason in `errors`).
    `pending`: the objects in `pending` have no definite outcome; the next run retries them.
    `in_doubt`: an event or purchase may have been applied without an acknowledgement (Braze never
    deduplicates them), or an object is pending after a failure that may have applied it.
    """

    batch_no: int
    status: Status
    errors: list[ObjectError]
    pending: list[tuple[str, int]]
    in_doubt: bool
    requests: int
    retries: int
    throttled: int
    status_codes: dict[str, int]


@dataclass(slots=True)
class LoadStats:
    """Totals of one `BrazeLoader.run`; `abandoned` lists batches announced but never resolved."""

    batches: int = 0
    acknowledged: int = 0
    pending: int = 0
    rejected_objects: int = 0
    requests: int = 0
    retries: int = 0
    throttled: int = 0
    status_codes: dict[str, int] = field(default_factory=dict)
    in_doubt: list[int] = field(default_factory=list)
    abandoned: list[int] = field(default_factory=list)
    elapsed: float = 0.0

    def add(self, result: BatchResult) -> None:
        """Fold one batch result into the totals."""
        self.batches += 1
        if result.status == BatchState.ACKNOWLEDGED:
            self.acknowledged += 1
        else:
            self.pending += 1
        self.rejected_objects += len(result.errors)
        self.requests += result.requests
        self.retries += result.retries
        self.throttled += result.throttled
        for key, count in result.status_codes.items():
            self.status_codes[key] = self.status_codes.get(key, 0) + count
        if result.in_doubt:
            self.in_doubt.append(result.batch_no)


class SentError(NamedTuple):
    """An `errors[]` entry of a Braze answer: array and index of the request *as sent*."""

    array: str
    index: int
    reason: str


class BrazeError(Exception):
    """Base of every Braze failure; `status` is the HTTP status when there was one."""

    transient: ClassVar[bool] = False

    def __init__(self, message: str, *, status: int | None = None, batch_no: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.batch_no = batch_no


class BrazeTerminalError(BrazeError):
    """Resending the same request cannot succeed."""


class BrazeTransientError(BrazeError):
    """The same request may succeed later; `may_have_applied` says whether Braze may hold it already."""

    transient = True
    may_have_applied: ClassVar[bool] = True
    key: ClassVar[str] = "transient"


class BrazeConfigError(BrazeTerminalError):
    """Wrong key, missing permission or wrong endpoint (401/403/404): the whole run must stop."""

    _WHAT: ClassVar[dict[int, str]] = {
        401: "refused the API key",
        403: "refused the API key's permissions",
        404: "has no such endpoint",
    }

    def __init__(self, status: int | None, *, what: str | None = None) -> None:
        what = what or self._WHAT.get(status or 0, "refused the request")
        shown = f" ({status})" if status is not None else ""
        super().__init__(f"Braze {what}{shown}: check BRAZE_API_KEY and BRAZE_REST_ENDPOINT", status=status)


class BrazeRejected(BrazeTerminalError):
    """400: Braze refused the request as a whole; `errors` are the objects it named (as sent)."""

    def __init__(self, errors: list[SentError], braze_message: str) -> None:
        super().__init__(f"Braze rejected the request (400, {len(errors)} objects named)", status=400)
        self.errors = errors
        self.braze_message = braze_message


class BrazeTooLarge(BrazeTerminalError):
    """413: body above Braze's 4 MB limit; the request must be split."""

    def __init__(self) -> None:
        super().__init__("Braze refused the request body as too large (413)", status=413)


class BrazeUnexpectedStatus(BrazeTerminalError):
    """A status outside Braze's documented table; the objects stay pending, nothing is resent now."""

    def __init__(self, status: int) -> None:
        super().__init__(f"Braze answered with unexpected status {status}", status=status)


class BrazeBodyError(BrazeTerminalError):
    """A planned body is not a JSON object of arrays, so it cannot be split or mapped: a planner bug."""

    def __init__(self, batch_no: int | None) -> None:
        super().__init__(f"batch {batch_no} body is not a JSON object of arrays", batch_no=batch_no)


class BrazeEndpointError(BrazeConfigError):
    """The endpoint answered, but not the way Braze does: a redirect, HTML, an empty body or a JSON object
    without `message` (a proxy, a login page, a wrong host). Nothing is acknowledged and the run stops.

    `may_have_applied`: a 2xx may come from something that passed the request on (in doubt); a redirect or
    another status was not applied. The text shows status, content type and the first bytes, redacted.
    """

    def __init__(self, status: int, content: bytes, headers: Mapping[str, str] | None = None) -> None:
        found = {str(k).lower(): v for k, v in (headers or {}).items()}
        self.may_have_applied = 200 <= status < 300
        self.content_type = (found.get("content-type") or "no content type").split(";")[0].strip()
        self.location = _safe_url(found.get("location"))
        self.first_bytes = shown_bytes(content)
        what = f"redirected to {self.location}" if self.location else "did not answer like Braze"
        fix = ("set BRAZE_REST_ENDPOINT to the address it redirects to (https, no path)" if self.location
               else "check BRAZE_REST_ENDPOINT: a proxy, a login page or a wrong host answered")
        BrazeError.__init__(
            self,
            f"the Braze endpoint {what} ({status}, {self.content_type}, body starts {self.first_bytes}): {fix}; "
            "nothing of that request counts as acknowledged",
            status=status,
        )


class BrazeThrottled(BrazeTransientError):
    """429: wait for the rate-limit window, then resend; never applied, so never in doubt."""

    may_have_applied = False
    key = "429"

    def __init__(self) -> None:
        super().__init__("Braze rate limit reached (429)", status=429)


class BrazeServerError(BrazeTransientError):
    """5xx (and 408): Braze may or may not have applied the request."""

    key = "5xx"

    def __init__(self, status: int) -> None:
        super().__init__(f"Braze server error ({status})", status=status)


class BrazeTimeout(BrazeTransientError):
    """No complete answer in time: the request may have been applied."""

    key = "timeout"

    def __init__(self, kind: str) -> None:
        super().__init__(f"Braze request timed out ({kind})")


class BrazeConnectionError(BrazeTransientError):
    """The connection failed mid-request: the request may have been applied."""

    key = "connection"

    def __init__(self, kind: str) -> None:
        super().__init__(f"Braze connection failed ({kind})")


class BrazeConnectFailed(BrazeTransientError):
    """No connection could be opened, so nothing was sent: retryable and never in doubt."""

    may_have_applied = False
    key = "connect"

    def __init__(self, kind: str) -> None:
        super().__init__(f"could not connect to Braze ({kind})")


def classify(status: int, content: bytes, headers: Mapping[str, str] | None = None) -> list[SentError]:
    """Return the per-object errors of an accepted answer, or raise the BrazeError its status means.

    The table is braze-api.md "Responses": 2xx queued (with optional `errors[]`), 400 poison, 413 split,
    401/403/404 configuration, 429 throttled, 408/5xx transient. Only Braze's documented success shape,
    a JSON object with `message`, acknowledges; any other 2xx, and any redirect, is a BrazeEndpointError.
    """
    if 200 <= status < 300:
        doc = _json(content)
        if not isinstance(doc.get("message"), str):
            raise BrazeEndpointError(status, content, headers)
        return _sent_errors(doc) if "errors" in doc else []
    if 300 <= status < 400:
        raise BrazeEndpointError(status, content, headers)
    if status == 429:
        raise BrazeThrottled()
    if status >= 500 or status == 408:
        raise BrazeServerError(status)
    if status in (401, 403, 404):
        raise BrazeConfigError(status)
    if status == 400:
        raise _rejected(_json(content))
    if status == 413:
        raise BrazeTooLarge()
    raise BrazeUnexpectedStatus(status)


def classify_exception(exc: BaseException) -> BrazeError:
    """Map a transport failure to a BrazeError; the httpx/aiohttp text is dropped (it may hold the URL).

    Only a connection that was never opened proves nothing was sent. httpx-aiohttp maps every aiohttp
    connection error, a server hanging up mid-request included, to httpx.ConnectTimeout, so the aiohttp
    cause decides when there is one.
    """
    origin = exc.__cause__ if isinstance(exc.__cause__, aiohttp.ClientError) else exc
    kind = type(origin).__name__
    if isinstance(origin, NOT_SENT):
        return BrazeConnectFailed(kind)
    if isinstance(origin, (httpx.TimeoutException, aiohttp.ServerTimeoutError, TimeoutError)):
        return BrazeTimeout(kind)
    if isinstance(origin, (httpx.UnsupportedProtocol, httpx.InvalidURL, aiohttp.InvalidURL)):
        return BrazeConfigError(None, what="endpoint URL is not usable")
    return BrazeConnectionError(kind)


def _rejected(doc: dict) -> BrazeRejected:
    """BrazeRejected for a 400 answer, carrying the objects it names and its message."""
    message = doc.get("message")
    return BrazeRejected(_sent_errors(doc), _reason(message) if message else "400 Bad Request")


def _json(content: bytes) -> dict:
    """Parse an answer body; anything but a JSON object counts as an empty answer."""
    try:
        doc = orjson.loads(content)
    except orjson.JSONDecodeError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _sent_errors(doc: dict) -> list[SentError]:
    """Read `errors[]` entries that name an object by `input_array` + `index`."""
    found = []
    for entry in doc.get("errors") or ():
        if not isinstance(entry, dict):
            continue
        array, index = entry.get("input_array"), entry.get("index")
        if array in ARRAYS and isinstance(index, int) and not isinstance(index, bool):
            found.append(SentError(array, index, _reason(entry.get("type") or doc.get("message") or "")))
    return found


def shown_bytes(content: bytes) -> str:
    """The first bytes of an unexpected answer, printable and redacted, quoted; `empty` for no body."""
    head = _SECRETS.sub(b"[redacted]", content[: SHOWN_BYTES * 4])[:SHOWN_BYTES]
    text = "".join(c if c.isprintable() else " " for c in head.decode("utf-8", "replace"))
    text = " ".join(text.split())
    if not text:
        return "empty"
    return repr(text + ("..." if len(content) > len(head) else ""))


def _safe_url(value: str | None) -> str | None:
    """A redirect target without credentials, query or fragment (they may hold a token)."""
    if not value:
        return None
    parts = urlsplit(value.strip())
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}" if parts.scheme and host else (parts.path or "a relative address")


def _reason(value: object) -> str:
    """Braze's code or sentence, bounded: it goes to the rejects file, never to logs."""
    return str(value)[:REASON_MAX] or "rejected by Braze"
