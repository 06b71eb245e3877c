"""A lean HTTP/1.1 server on asyncio + httptools, built for the sandbox's one job.

Why not uvicorn: measured on our 2-core VMs, a send() syscall costs ~100 µs and uvicorn writes
each answer's head and body in two; it also runs a task, header regexes and middleware per request.
Here the handler runs synchronously when the request is complete and its whole answer goes out in
one write. Handlers return a `Response`; `delay` postpones its write (latency faults), `reset`
aborts the connection with a TCP RST.
Keep-alive, pipelining (answers kept in order), chunked bodies and `Expect: 100-continue` work.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any
from urllib.parse import unquote

import httptools
import orjson

REASONS = {
    200: b"OK",
    201: b"Created",
    400: b"Bad Request",
    401: b"Unauthorized",
    404: b"Not Found",
    405: b"Method Not Allowed",
    413: b"Payload Too Large",
    429: b"Too Many Requests",
    500: b"Internal Server Error",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
    504: b"Gateway Timeout",
}


@dataclass(slots=True)
class Request:
    """One complete request; `body` is None when it exceeded the server's body limit."""

    method: str
    path: str
    query: bytes
    headers: dict[bytes, bytes]
    body: bytes | None


@dataclass(slots=True)
class Response:
    """A JSON answer (`payload`), or a connection reset; `delay` seconds before it is written."""

    status: int = 200
    payload: Any = None
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    delay: float = 0.0
    reset: bool = False


_date_cache = [0, b""]


def _date() -> bytes:
    now = int(time.time())
    if now != _date_cache[0]:
        _date_cache[0], _date_cache[1] = now, formatdate(now, usegmt=True).encode()
    return _date_cache[1]


def encode(response: Response, keep_alive: bool) -> bytes:
    """Status line, headers and JSON body as one buffer."""
    body = orjson.dumps(response.payload)
    head = [
        b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nDate: %s\r\n"
        % (response.status, REASONS.get(response.status, b"Unknown"), len(body), _date())
    ]
    for name, value in response.headers:
        head.append(b"%s: %s\r\n" % (name, value))
    if not keep_alive:
        head.append(b"Connection: close\r\n")
    head.append(b"\r\n")
    head.append(body)
    return b"".join(head)


class HttpProtocol(asyncio.Protocol):
    """One client connection: parse requests, call the handler, write answers in request order."""

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.handler = server.handler
        self.max_body = server.max_body()
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.answers: deque[list] = deque()
        self.closing = False
        self.url = b""
        self.headers: dict[bytes, bytes] = {}
        self.chunks: list[bytes] = []
        self.size = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.closing = True
        # The parser holds this protocol: break the cycle so the connection is freed at once
        # (the own-process server freezes the collector's view of old objects).
        self.parser = None

    def data_received(self, data: bytes) -> None:
        if self.parser is None:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._answer_now(Response(400, {"message": "Bad Request: malformed HTTP"}), keep_alive=False)

    def on_message_begin(self) -> None:
        self.max_body = self.server.max_body()
        self.url = b""
        self.headers = {}
        self.chunks = []
        self.size = 0

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.lower()] = value

    def on_headers_complete(self) -> None:
        if self.headers.get(b"expect", b"").lower() == b"100-continue":
            length = self.headers.get(b"content-length", b"0")
            if length.isdigit() and int(length) > self.max_body:
                self._answer_now(Response(413, {"message": "Request Entity Too Large"}), keep_alive=False)
            else:
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size <= self.max_body:
            self.chunks.append(body)
        else:
            self.chunks = []

    def on_message_complete(self) -> None:
        if self.closing:
            return
        parsed = httptools.parse_url(self.url)
        body = b"".join(self.chunks) if self.size <= self.max_body else None
        request = Request(
            self.parser.get_method().decode(), _path(parsed.path), parsed.query or b"", self.headers, body
        )
        keep_alive = self.parser.should_keep_alive()
        try:
            response = self.handler(request)
        except Exception:  # noqa: BLE001 - a bug in one handler must answer 500, not kill the server; logged
            self.server.log_error()
            response = Response(500, {"message": "Internal Server Error"})
            keep_alive = False
        if response.delay > 0:
            slot = [False, None]
            self.answers.append(slot)
            asyncio.get_running_loop().call_later(response.delay, self._deliver, slot, response, keep_alive)
        else:
            self._answer_now(response, keep_alive)

    def _answer_now(self, response: Response, keep_alive: bool) -> None:
        if self.answers:
            slot = [False, None]
            self.answers.append(slot)
            self._deliver(slot, response, keep_alive)
        else:
            self._write(response, keep_alive)

    def _deliver(self, slot: list, response: Response, keep_alive: bool) -> None:
        """Mark a delayed answer ready, then write every ready answer at the head of the queue."""
        slot[0], slot[1] = True, (response, keep_alive)
        while self.answers and self.answers[0][0]:
            _, (answer, alive) = self.answers.popleft()
            self._write(answer, alive)

    def _write(self, response: Response, keep_alive: bool) -> None:
        if self.closing:
            return
        if response.reset:
            reset(self.transport)
            self.closing = True
            return
        keep_alive = keep_alive and not self.server.stopping
        self.transport.write(encode(response, keep_alive))
        if not keep_alive:
            self.transport.close()
            self.closing = True

    def close_if_idle(self) -> None:
        """Close a kept-alive connection with no answer pending (shutdown)."""
        if not self.answers and not self.closing:
            self.transport.close()
            self.closing = True


def _path(raw: bytes) -> str:
    path = raw.decode("latin-1")
    return unquote(path) if "%" in path else path


def reset(transport: asyncio.Transport) -> None:
    """Abort a connection with a TCP reset (SO_LINGER 0), sending no answer."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class HttpServer:
    """Serves a handler on an already bound socket until `stop()`."""

    def __init__(
        self,
        handler: Callable[[Request], Response],
        max_body: Callable[[], int],
        log_error: Callable[[], None],
    ) -> None:
        self.handler = handler
        self.max_body = max_body
        self.log_error = log_error
        self.connections: set[HttpProtocol] = set()
        self.stopping = False
        self._stopped: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(
        self, sock: socket.socket, on_ready: Callable[[], None], on_stop: Callable[[], None] | None = None
    ) -> None:
        """Accept connections until `stop()`; then close them and call `on_stop`."""
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        server = await self._loop.create_server(lambda: HttpProtocol(self), sock=sock, backlog=2048)
        on_ready()
        try:
            await self._stopped.wait()
        finally:
            self.stopping = True
            server.close()
            for connection in list(self.connections):
                connection.close_if_idle()
            deadline = time.monotonic() + 5
            while self.connections and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            if on_stop is not None:
                on_stop()

    def stop(self) -> None:
        """Ask the server to stop; safe from any thread."""
        if self._loop is not None and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
