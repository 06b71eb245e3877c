"""(b) and (c): our client against braze-client (PyPI) and a naive synchronous httpx loop, same server.

Each case posts the same 75-object bodies; cases run interleaved for several rounds and medians are kept,
so a busy moment on the shared machine hits every case alike. The server runs in a child process, so this
process's CPU time is the client's alone (CPU-ms per request).
"""

from __future__ import annotations

import statistics

import orjson
from braze.client import BrazeClient

from bench.bench_client import API_KEY, body_of_75, loader_run, measure, raw_sync, start_server
from braze_migrate.settings import LoadSettings
from connectors.braze.ratelimit import Rate

UNLIMITED = Rate(10_000_000, 1)
OURS = "BrazeLoader (ours)"
PYPI = "braze-client (PyPI)"
NAIVE = "httpx.Client loop (naive)"


def braze_client_run(endpoint: str, objects: list[list[dict]]) -> None:
    """braze-client as its README shows it: one `user_track` call per 75 attributes, one after another."""
    client = BrazeClient(API_KEY, api_url=endpoint)
    for attributes in objects:
        answer = client.user_track(attributes=attributes)
        assert answer["success"], answer.get("status_code")


def compare_clients(server: str, requests: int, rounds: int) -> dict:
    """Median requests/s and client CPU-ms per request of each case against `server` (minimal | sandbox)."""
    bodies = [body_of_75(i) for i in range(requests)]
    objects = [orjson.loads(body)["attributes"] for body in bodies]
    concurrency = LoadSettings().concurrency
    endpoint, stop = start_server(server)
    try:
        url = endpoint + "/users/track"
        cases = {
            OURS: lambda: loader_run(endpoint, None, bodies, concurrency, UNLIMITED),
            PYPI: lambda: braze_client_run(endpoint, objects),
            NAIVE: lambda: raw_sync(url, bodies),
        }
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
        for _ in range(rounds):
            for name, case in cases.items():
                wall, cpu = measure(case)
                runs[name].append((requests / wall, cpu / requests * 1000))
    finally:
        stop()
    return {
        "server": server,
        "requests": requests,
        "rounds": rounds,
        "concurrency": concurrency,
        "cases": {name: {"req_per_s": statistics.median(r for r, _ in rows),
                         "cpu_ms_per_request": statistics.median(c for _, c in rows),
                         "runs": rows} for name, rows in runs.items()},
    }
