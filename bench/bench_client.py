"""Client CPU per 75-object `/users/track` request and requests/s, per transport, against a fast local server.

The server runs in a child process, so the process CPU time measured here is the client's alone. Cases run
interleaved for `--repeat` rounds and medians are reported, which keeps the figures usable on a busy machine.
Usage: .venv/bin/python bench/bench_client.py [--requests 4000] [--concurrency 32] [--repeat 3] [--server sandbox]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import socket
import statistics
import sys
import time
from collections import Counter
from functools import partial
from pathlib import Path

import httpx
import orjson
from httpx_aiohttp import AiohttpTransport

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from connectors.braze.client import BatchRequest, BrazeLoader
from connectors.braze.ratelimit import Rate, parse_rate

API_KEY = "bench-key"
ANSWER = b'{"message":"success","attributes_processed":75,"events_processed":0,"purchases_processed":0}'
HEADERS = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}


def body_of_75(batch_no: int) -> bytes:
    """A realistic attributes-only request: 75 users with a handful of profile and custom fields."""
    users = [
        {
            "external_id": f"user-{batch_no:06d}-{i:02d}",
            "email": f"user{batch_no}.{i}@example.com",
            "first_name": "Ada",
            "country": "GB",
            "email_subscribe": "opted_in",
            "lifetime_value": 1234.5 + i,
            "tier": "gold",
            "tags": ["a", "b", "c"],
        }
        for i in range(75)
    ]
    return orjson.dumps({"attributes": users})


async def asgi_201(scope, receive, send) -> None:
    """Minimal Braze stand-in: drains the body, answers 201 with rate-limit headers."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    headers = [(b"content-type", b"application/json"), (b"x-ratelimit-limit", b"10000000"),
               (b"x-ratelimit-remaining", b"9999999"), (b"x-ratelimit-reset", b"3")]
    await send({"type": "http.response.start", "status": 201, "headers": headers})
    await send({"type": "http.response.body", "body": ANSWER})


def serve_minimal(port: int) -> None:
    """Child process: the minimal ASGI app on uvicorn + httptools."""
    import uvicorn

    uvicorn.run(asgi_201, host="127.0.0.1", port=port, http="httptools", log_level="warning", access_log=False)


def start_server(kind: str) -> tuple[str, object]:
    """(endpoint, stop) of a server in its own process: the minimal app, or the sandbox if asked and present."""
    if kind == "sandbox":
        from braze_sandbox import SandboxConfig, start_sandbox

        handle = start_sandbox(SandboxConfig(api_key=API_KEY, rate_limit="10000000/1s"), isolated=True)
        return handle.url, handle.stop
    port = free_port()
    process = multiprocessing.get_context("spawn").Process(target=serve_minimal, args=(port,), daemon=True)
    process.start()
    endpoint = f"http://127.0.0.1:{port}"
    wait_until_up(endpoint + "/users/track")

    def stop() -> None:
        process.terminate()
        process.join(5)

    return endpoint, stop


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(url: str, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            httpx.post(url, content=b"{}", headers=HEADERS, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit(f"server at {url} did not come up")


def measure(run) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - wall, time.process_time() - cpu


def raw_async(url: str, transport: httpx.AsyncBaseTransport, bodies: list[bytes], concurrency: int) -> None:
    """httpx.AsyncClient.post over a transport: the baseline the team measured."""

    async def go() -> None:
        async with httpx.AsyncClient(transport=transport, headers=HEADERS) as client:
            work = iter(bodies)

            async def worker() -> None:
                for body in work:
                    (await client.post(url, content=body)).raise_for_status()

            await asyncio.gather(*(worker() for _ in range(concurrency)))

    asyncio.run(go())


def raw_aiohttp(url: str, bodies: list[bytes], concurrency: int) -> None:
    """aiohttp alone, no httpx objects: the floor for any client built on it."""
    import aiohttp

    async def go() -> None:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
            work = iter(bodies)

            async def worker() -> None:
                for body in work:
                    async with session.post(url, data=body, headers=HEADERS) as answer:
                        await answer.read()
                        assert answer.status == 201

            await asyncio.gather(*(worker() for _ in range(concurrency)))

    asyncio.run(go())


def raw_sync(url: str, bodies: list[bytes]) -> None:
    """One synchronous httpx.Client, sequential requests."""
    with httpx.Client(headers=HEADERS) as client:
        for body in bodies:
            client.post(url, content=body).raise_for_status()


def loader_run(endpoint: str, transport, bodies: list[bytes], concurrency: int, rate: Rate) -> None:
    """BrazeLoader end to end (limiter, retry layer, classification, callbacks)."""
    loader = BrazeLoader(endpoint, API_KEY, rate=rate, concurrency=concurrency, transport=transport)
    stats = loader.run_sync((BatchRequest(n, body) for n, body in enumerate(bodies)), lambda n: None, lambda r: None)
    assert stats.acknowledged == len(bodies), stats


def limits(concurrency: int) -> httpx.Limits:
    return httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)


def compare_transports(args, endpoint: str) -> None:
    """Every case `--repeat` times, interleaved; prints medians and ratios."""
    url, c = endpoint + "/users/track", args.concurrency
    bodies = [body_of_75(i) for i in range(args.requests)]
    slow = bodies[: max(1, len(bodies) // 4)]  # httpx's native pool is ~10x slower: fewer requests, same figures
    print(f"{len(bodies)} requests of {len(bodies[0]):,} bytes (75 objects), concurrency {c}, "
          f"{args.repeat} rounds, server {url}\n")
    unlimited = Rate(10_000_000, 1)
    cases = [
        ("httpx AsyncClient, native pool", slow,
         lambda: raw_async(url, httpx.AsyncHTTPTransport(limits=limits(c)), slow, c)),
        ("httpx AsyncClient, httpx-aiohttp", bodies, lambda: raw_async(url, AiohttpTransport(limits=limits(c)), bodies, c)),
        ("httpx Client (sync, sequential)", bodies, lambda: raw_sync(url, bodies)),
        ("aiohttp alone (floor, no httpx)", bodies, lambda: raw_aiohttp(url, bodies, c)),
        ("BrazeLoader, native pool", slow,
         lambda: loader_run(endpoint, partial(httpx.AsyncHTTPTransport, limits=limits(c)), slow, c, unlimited)),
        ("BrazeLoader, httpx-aiohttp (default)", bodies, lambda: loader_run(endpoint, None, bodies, c, unlimited)),
    ]
    rows: dict[str, list[tuple[float, float]]] = {name: [] for name, _, _ in cases}
    for _ in range(args.repeat):
        for name, sent, case in cases:
            wall, cpu = measure(case)
            rows[name].append((len(sent) / wall, cpu / len(sent) * 1000))
    report(rows)


def report(rows: dict[str, list[tuple[float, float]]]) -> None:
    """Median req/s and CPU-ms per request of each case, then ratios against httpx's native pool."""
    medians = {name: (statistics.median(r for r, _ in runs), statistics.median(c for _, c in runs))
               for name, runs in rows.items()}
    for name, (rps, cpu) in medians.items():
        best = min(c for _, c in rows[name])
        print(f"{name:38s} {rps:7.0f} req/s   {cpu:6.3f} client CPU-ms/request (best {best:.3f})")
    base_rps, base_cpu = medians["httpx AsyncClient, native pool"]
    print("\nratios against httpx's native async pool (throughput ×, CPU per request ×):")
    for name, (rps, cpu) in list(medians.items())[1:]:
        print(f"  {name:36s} {rps / base_rps:5.1f}× req/s   {cpu / base_cpu:5.2f}× CPU")


def sustain(args, endpoint: str) -> None:
    """Share of the limit the default loader sustains, counted as Braze does: per epoch-aligned window."""
    rate = parse_rate(args.rate)
    count = int(rate.requests / rate.seconds * args.sustain_seconds)
    bodies = [body_of_75(i % 100) for i in range(count)]
    sent: list[float] = []
    loader = BrazeLoader(endpoint, API_KEY, rate=rate, concurrency=args.concurrency)
    wall, cpu = measure(lambda: loader.run_sync(
        (BatchRequest(n, body) for n, body in enumerate(bodies)), lambda n: sent.append(time.time()), lambda r: None))
    windows = Counter(int(t // rate.seconds) for t in sent)
    full = sorted(n for window, n in windows.items() if min(windows) < window < max(windows))
    print(f"\nsustained at --rate {rate} (concurrency {args.concurrency}): {count} requests in {wall:.1f} s, "
          f"{cpu / count * 1000:.3f} client CPU-ms/request")
    print(f"  requests per Braze window (epoch-aligned {rate.seconds:g} s): max {max(windows.values())} "
          f"(limit {rate.requests}); complete windows {full} = "
          f"{min(full) / rate.requests:.1%} .. {max(full) / rate.requests:.1%} of the limit")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=3, help="rounds, interleaved; medians are reported")
    parser.add_argument("--sustain-seconds", type=float, default=12.0)
    parser.add_argument("--rate", default="3000/3s")
    parser.add_argument("--server", choices=["minimal", "sandbox"], default="minimal",
                        help="a minimal ASGI app answering 201 (default: never the bottleneck) or the Braze sandbox")
    args = parser.parse_args()

    endpoint, stop = start_server(args.server)
    try:
        compare_transports(args, endpoint)
        sustain(args, endpoint)
    finally:
        stop()


if __name__ == "__main__":
    main()
