"""The HTTP transport to Braze: the REST base URL, the prebuilt POSTs (`PostFactory`: the API key lives only
there and never in a repr), the connection pool (httpx over aiohttp), and reading an answer's body.

Override points: `Transport` (pass any httpx transport, or a factory of one per run, to `BrazeLoader`;
the tests pass the sandbox's), `PostFactory` (the headers every request carries), `default_transport`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from connectors.braze.outcomes import BrazeConfigError

# What a transport may raise for a request that got no answer (httpx-aiohttp leaks some aiohttp errors).
TRANSPORT_ERRORS = (httpx.TransportError, aiohttp.ClientError, OSError, TimeoutError)
# An httpx transport (the caller's, never closed here) or a factory of one per run (closed after it).
Transport = httpx.AsyncBaseTransport | Callable[[], httpx.AsyncBaseTransport]


async def read_body(response: httpx.Response) -> bytes:
    """The answer's bytes. We ask for `identity` encoding, so the raw stream is the body and httpx's
    decoder chain (~30 µs per request) is skipped; an encoded answer still goes through `aread`."""
    if "content-encoding" in response.headers:
        return await response.aread()
    try:
        return b"".join([chunk async for chunk in response.stream])
    finally:
        await response.aclose()


def open_transport(transport: Transport) -> tuple[httpx.AsyncBaseTransport, bool]:
    """(transport, owned): a factory makes one for this run, closed at its end; an instance stays the caller's."""
    if isinstance(transport, httpx.AsyncBaseTransport):
        return transport, False
    return transport(), True


def default_transport(concurrency: int) -> httpx.AsyncBaseTransport:
    """httpx over aiohttp: several times less client CPU per request than httpx's own pool (bench_client.py)."""
    return AiohttpTransport(
        limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency, keepalive_expiry=30)
    )


def rest_base_url(endpoint: str) -> str:
    """The REST endpoint without a trailing slash; a missing one names the variable to set."""
    endpoint = (endpoint or "").strip().rstrip("/")
    if not endpoint.startswith(("https://", "http://")):
        raise BrazeConfigError(None, what="REST endpoint is not an http(s) URL")
    return endpoint


class PostFactory:
    """Builds the POSTs to one Braze URL with ready-made headers (half httpx's per-request cost).

    The API key lives only here, and the repr leaves it out, so tracebacks with locals never show it.
    """

    __slots__ = ("_extensions", "_headers", "url")

    def __init__(self, url: str, api_key: Any, timeout: float) -> None:
        key = api_key.get_secret_value() if hasattr(api_key, "get_secret_value") else api_key
        if not isinstance(key, str) or not key.strip():
            raise BrazeConfigError(None, what="API key is empty")
        self.url = httpx.URL(url)
        self._headers = [
            (b"Host", self.url.netloc),
            (b"Authorization", f"Bearer {key.strip()}".encode()),
            (b"Content-Type", b"application/json"),
            (b"Accept-Encoding", b"identity"),
        ]
        self._extensions = {"timeout": httpx.Timeout(timeout).as_dict()}

    def __repr__(self) -> str:
        return f"PostFactory({str(self.url)!r})"

    def __call__(self, body: bytes) -> httpx.Request:
        headers = [*self._headers, (b"Content-Length", b"%d" % len(body))]
        request = httpx.Request("POST", self.url, headers=headers, stream=httpx.ByteStream(body), extensions=self._extensions)
        request.read()
        return request
