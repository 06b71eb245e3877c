"""How many 75-object `/users/track` requests per second the sandbox sustains on one core.

The server runs in its own process (`start_sandbox(isolated=True)`, one event loop, so one core);
a separate client process drives it over keep-alive connections with pre-built requests, so the
client's own cost stays small. The run is bounded in time and count and stops by itself.
It prints the rate sustained, then the server's CPU time per request (Linux): on a machine where
other work takes CPU from the server, the second line is its capacity on one fully used core.

    .venv/bin/python bench/bench_sandbox.py [--seconds 5] [--connections 8] [--mix mixed|attributes]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import socket
import sys
import threading
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from braze_sandbox import SandboxConfig, start_sandbox

API_KEY = "bench-key"
OBJECTS = 75
MAX_REQUESTS = 2_000_000


def make_body(batch: int, mix: str) -> bytes:
    """One realistic request: 75 objects, one user's objects together."""
    attributes, events, purchases = [], [], []
    for i in range(OBJECTS):
        user = f"user-{batch:06d}-{i // 3:03d}"
        kind = "attributes" if mix == "attributes" else ("attributes", "events", "purchases")[i % 3]
        if kind == "attributes":
            attributes.append(
                {
                    "external_id": user,
                    "email": f"{user}@example.com",
                    "first_name": "Ada",
                    "country": "GB",
                    "email_subscribe": "opted_in",
                    "plan": "gold",
                    "visits": {"inc": 1},
                    "score": 12.5,
                    "vip": True,
                    "tags": ["a", "b", "c"],
                    "signup": "2024-05-01T12:00:00.000Z",
                }
            )
        elif kind == "events":
            events.append(
                {
                    "external_id": user,
                    "name": "viewed_item",
                    "time": "2024-05-01T12:00:00.000Z",
                    "properties": {"item": "sku-1", "price": 9.99, "category": "books"},
                }
            )
        else:
            purchases.append(
                {
                    "external_id": user,
                    "product_id": "sku-1",
                    "currency": "EUR",
                    "price": 9.99,
                    "quantity": 2,
                    "time": "2024-05-01T12:00:00.000Z",
                    "properties": {"channel": "web"},
                }
            )
    body = {"attributes": attributes, "events": events, "purchases": purchases}
    return orjson.dumps({k: v for k, v in body.items() if v})


def request_bytes(host: str, port: int, body: bytes) -> bytes:
    head = (
        f"POST /users/track HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {API_KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def read_response(sock: socket.socket, buffer: bytearray) -> int:
    """Read one response (Content-Length framed); return its status code."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        buffer += chunk
    head_end = buffer.index(b"\r\n\r\n") + 4
    head = bytes(buffer[:head_end]).lower()
    start = head.index(b"content-length:") + 15
    length = int(head[start : head.index(b"\r\n", start)])
    while len(buffer) < head_end + length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        buffer += chunk
    status = int(buffer[9:12])
    del buffer[: head_end + length]
    return status


def drive(host: str, port: int, requests: list[bytes], deadline: float, results: list) -> None:
    """One keep-alive connection sending requests back to back until the deadline."""
    sock = socket.create_connection((host, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buffer, done, bad, index = bytearray(), 0, 0, 0
    while time.perf_counter() < deadline and done < MAX_REQUESTS:
        sock.sendall(requests[index % len(requests)])
        index += 1
        status = read_response(sock, buffer)
        done += 1
        bad += status != 201
    sock.close()
    results.append((done, bad))


def client(host: str, port: int, seconds: float, connections: int, mix: str, queue) -> None:
    """The client process: pre-build bodies, then drive several connections from threads."""
    requests = [request_bytes(host, port, make_body(batch, mix)) for batch in range(200)]
    results: list = []
    start = time.perf_counter()
    deadline = start + seconds
    threads = [
        threading.Thread(target=drive, args=(host, port, requests, deadline, results))
        for _ in range(connections)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    queue.put((sum(d for d, _ in results), sum(b for _, b in results), elapsed, len(requests[0])))


def cpu_seconds(pid: int) -> float | None:
    """User+system CPU time of a process (Linux /proc), to report the server's cost per request."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured run length (default 5)")
    parser.add_argument("--connections", type=int, default=8, help="keep-alive connections (default 8)")
    parser.add_argument(
        "--mix",
        choices=("mixed", "attributes"),
        default="mixed",
        help="mixed: 25 attributes + 25 events + 25 purchases; attributes: 75 attributes",
    )
    args = parser.parse_args()
    config = SandboxConfig(api_key=API_KEY, rate_limit="100000000/1s")
    with start_sandbox(config, isolated=True) as sandbox:
        host, port = sandbox.url.removeprefix("http://").rsplit(":", 1)
        queue = multiprocessing.get_context("spawn").Queue()
        warmup = multiprocessing.get_context("spawn").Process(
            target=client, args=(host, int(port), 1.0, args.connections, args.mix, queue)
        )
        warmup.start()
        queue.get()
        warmup.join()
        sandbox.reset()
        process = multiprocessing.get_context("spawn").Process(
            target=client, args=(host, int(port), args.seconds, args.connections, args.mix, queue)
        )
        cpu_before = cpu_seconds(sandbox.pid)
        process.start()
        done, bad, elapsed, body_bytes = queue.get()
        cpu_after = cpu_seconds(sandbox.pid)
        process.join()
        stats = sandbox.stats()
    rate = done / elapsed
    print(
        f"{done} requests of {OBJECTS} objects ({body_bytes} bytes) in {elapsed:.2f} s over "
        f"{args.connections} connections: {rate:.0f} requests/s ({rate * OBJECTS:.0f} objects/s); "
        f"non-201: {bad}; server counted {stats['requests']} requests, {stats['data_points']} data points"
    )
    if cpu_before is not None and cpu_after is not None and done:
        per_request = (cpu_after - cpu_before) / done
        print(
            f"server CPU {per_request * 1000:.3f} ms per request = {1 / per_request:.0f} requests/s "
            f"per fully used core (server used {(cpu_after - cpu_before) / elapsed:.0%} of a core)"
        )
    return 0 if bad == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
