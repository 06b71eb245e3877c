"""Conformance of the sandbox's own HTTP/1.1 server: what real clients (curl, requests, proxies) send."""

from __future__ import annotations

import socket

import orjson

from tests.sandbox.helpers import KEY, attrs


def connect(api) -> socket.socket:
    host, port = api.handle.url.removeprefix("http://").rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=5)
    return sock


def request(body: bytes, *extra: str) -> bytes:
    head = [
        "POST /users/track HTTP/1.1",
        "Host: sandbox",
        f"Authorization: Bearer {KEY}",
        "Content-Type: application/json",
        *extra,
    ]
    if not any(h.lower().startswith("transfer-encoding") for h in extra):
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def read_answers(sock: socket.socket, count: int) -> list[tuple[int, bytes, dict]]:
    """Read `count` Content-Length framed answers: (status, raw head, JSON body)."""
    data, answers = b"", []
    while len(answers) < count:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, "connection closed early"
            data += chunk
        head, rest = data.split(b"\r\n\r\n", 1)
        length = int(
            next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")).split(
                b":"
            )[1]
        )
        while len(rest) < length:
            rest += sock.recv(65536)
        if head.startswith(b"HTTP/1.1 100"):
            data = rest
            continue
        answers.append((int(head[9:12]), head, orjson.loads(rest[:length])))
        data = rest[length:]
    return answers


def test_rule_keep_alive_serves_many_requests_on_one_connection(api):
    """Rule (HTTP/1.1): a connection stays open for further requests (keep-alive)."""
    with connect(api) as sock:
        for i in range(3):
            sock.sendall(request(orjson.dumps({"attributes": [attrs(f"k{i}")]})))
            assert read_answers(sock, 1)[0][0] == 201
    assert len(api.handle.profiles()) == 3


def test_rule_pipelined_requests_are_answered_in_order(api):
    """Rule (HTTP/1.1): pipelined requests get their answers in request order."""
    bodies = [orjson.dumps({"attributes": [attrs(f"p{i}")]}) for i in range(3)]
    bad = b"{oops"
    with connect(api) as sock:
        sock.sendall(request(bodies[0]) + request(bad) + request(bodies[1]) + request(bodies[2]))
        statuses = [status for status, _, _ in read_answers(sock, 4)]
    assert statuses == [201, 400, 201, 201]


def test_rule_expect_100_continue(api):
    """Rule (HTTP/1.1): `Expect: 100-continue` (curl's default for large bodies) gets a 100 first."""
    body = orjson.dumps({"attributes": [attrs(note="x" * 2000)]})
    with connect(api) as sock:
        head = request(b"", "Expect: 100-continue").replace(
            b"Content-Length: 0", f"Content-Length: {len(body)}".encode()
        )
        sock.sendall(head)
        assert sock.recv(1024).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(body)
        assert read_answers(sock, 1)[0][0] == 201


def test_rule_chunked_request_bodies(api):
    """Rule (HTTP/1.1): a chunked request body is accepted like a Content-Length one."""
    body = orjson.dumps({"attributes": [attrs("chunked")]})
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:10], body[10:])) + b"0\r\n\r\n"
    with connect(api) as sock:
        sock.sendall(request(chunked, "Transfer-Encoding: chunked"))
        assert read_answers(sock, 1)[0][0] == 201
    assert api.profile("chunked") is not None


def test_rule_connection_close_is_honoured(api):
    """Rule (HTTP/1.1): `Connection: close` gets `Connection: close` and the socket is closed after."""
    with connect(api) as sock:
        sock.sendall(request(orjson.dumps({"attributes": [attrs()]}), "Connection: close"))
        status, head, _ = read_answers(sock, 1)[0]
        assert status == 201 and b"connection: close" in head.lower()
        assert sock.recv(1024) == b""


def test_rule_rate_limit_header_names_as_documented(api):
    """Rule: the headers are sent as `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset`."""
    with connect(api) as sock:
        sock.sendall(request(orjson.dumps({"attributes": [attrs()]})))
        _, head, _ = read_answers(sock, 1)[0]
    for name in (b"X-RateLimit-Limit: ", b"X-RateLimit-Remaining: ", b"X-RateLimit-Reset: "):
        assert name in head


def test_rule_malformed_http_gets_400(api):
    """Rule (HTTP/1.1): bytes that are not HTTP get a 400 and the connection is closed."""
    with connect(api) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        status, _, _ = read_answers(sock, 1)[0]
        assert status == 400
