"""(e) End to end through the engine: plan, load and commit an export into a fast local server.

A first backfill into an empty state is planned while it loads (braze_migrate/run/pipeline.py): its "plan" step
only creates the run and its "load" step plans and sends. The load runs at Braze's default limit (3,000 requests per 3 s) against the minimal server of
bench_client.py, which is never the bottleneck there, so the share of the limit the load sustained is the
client's and the limiter's doing. The steps are timed separately: plan, load, commit.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import polars as pl

from bench.bench_client import API_KEY
from bench.counting import CountingTransport, window_fill
from braze_migrate.plan.planner import scan_batches
from braze_migrate.run.engine import Engine
from braze_migrate.settings import load_settings
from connectors.braze.ratelimit import parse_rate
from connectors.braze.transport import default_transport

DEFAULT_LIMIT = "3000/3s"


def run_e2e(kind: str, export: Path, state: Path, endpoint: str, users: int, limit: str = DEFAULT_LIMIT) -> dict:
    """One engine run of `export` into the state folder `state`; times, limit share and the summary's totals."""
    settings = load_settings(state=state, rate_limit=limit)
    rate = parse_rate(limit)
    counting: list[CountingTransport] = []

    def transport() -> CountingTransport:
        counting.append(CountingTransport(default_transport(settings.concurrency)))
        return counting[-1]

    engine = Engine(settings)
    try:
        started = time.monotonic()
        prepared = engine.prepare(kind, str(export))
        planned, cpu = time.monotonic(), time.process_time()
        stats = engine.apply(prepared, endpoint, API_KEY, transport=transport)
        loaded, cpu = time.monotonic(), time.process_time() - cpu
        # Read before the commit: a committed run's request bodies are deleted (personal data at rest).
        planned_batches = scan_batches(prepared.plan_dir, ["n_attributes", "n_events", "n_purchases"]).collect()
        objects = int(planned_batches.select(pl.sum_horizontal(pl.all().cast(pl.Int64)).sum()).item() or 0)
        summary = engine.finish(prepared, started=started)
        done = time.monotonic()
    finally:
        engine.close()
    load_s = loaded - planned
    return {
        "kind": kind,
        "users": users,
        "status": summary["status"],
        "requests": stats.requests,
        "throttled": stats.throttled,
        "plan_s": planned - started,
        "load_s": load_s,
        "commit_s": done - loaded,
        "total_s": done - started,
        # From the start of the run to its summary, against what Braze's limit alone needs (1,000 requests/s).
        "wall_over_limit": (done - started) / max(1e-9, stats.requests / (rate.requests / rate.seconds)),
        "planned_batches": planned_batches.height,
        "planned_objects": objects,
        "minimum_batches": -(-objects // settings.batch_size),
        "pipelined": prepared.batches == 0,
        "users_per_s": users / (done - started),
        # Client, ledger and plan reading together: near load_s the loading process is CPU-bound.
        "load_cpu_s": cpu,
        "load_cpu_ms_per_request": cpu / max(1, stats.requests) * 1000,
        "limit": str(rate),
        "limit_share": stats.requests / load_s * rate.seconds / rate.requests if load_s > 0 else None,
        "median_latency_ms": statistics.median(counting[0].latency) * 1000 if counting and counting[0].latency else None,
        "windows": window_fill(counting[0].sent if counting else [], rate.requests, rate.seconds),
    }
