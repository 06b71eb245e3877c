"""Loader CPU: CPU time of the whole process tree per acknowledged 75-object request while a sync loads at
Braze's default limit (3,000 requests per 3 s) into the minimal server of bench_client.py.

The state first holds a backfill of the history export's users alone; the sync then sends its events and
purchases (every one new), so the plan is complete before the load starts and the load step is measured alone:
the client, the limiter, the ledger writes and the progress watcher, all in the measured process (threads
included) and its children.
"""

from __future__ import annotations

import resource
import shutil
import time
from pathlib import Path

from bench.bench_client import API_KEY, start_server
from bench.history import ensure_history
from braze_migrate import progress
from braze_migrate.progress import ProgressEvent
from braze_migrate.run.engine import Engine
from braze_migrate.settings import load_settings

LIMIT = "3000/3s"


def tree_cpu() -> float:
    """CPU seconds of this process (every thread) and of its children that have ended."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def loader_cpu(users: int, events: int, purchases: int, out: Path) -> dict:
    """A sync of `events` events and `purchases` purchases of `users` known users, loaded at LIMIT."""
    made = ensure_history(users, events, purchases, out / "history", single_file=True)
    users_only = out / "loader-users"
    if not (users_only / "users").exists():
        shutil.copytree(made.folder / "users", users_only / "users")
    state = out / "loader-state"
    shutil.rmtree(state, ignore_errors=True)
    endpoint, stop = start_server("minimal")
    try:
        _run("backfill", users_only, state, endpoint)
        return _run("sync", made.folder, state, endpoint, measured=True)
    finally:
        stop()
        shutil.rmtree(state, ignore_errors=True)


def _run(kind: str, export: Path, state: Path, endpoint: str, *, measured: bool = False) -> dict:
    engine = Engine(load_settings(state=state, rate_limit=LIMIT))
    events: list[ProgressEvent] = []
    try:
        prepared = engine.prepare(kind, str(export))
        wall, cpu = time.perf_counter(), tree_cpu()
        with progress.watching(engine.ledger, prepared.run_id, events.append):  # as the load stage runs it
            stats = engine.apply(prepared, endpoint, API_KEY)
        wall, cpu = time.perf_counter() - wall, tree_cpu() - cpu
        summary = engine.finish(prepared, started=time.monotonic())
    finally:
        engine.close()
    if not measured:
        return {}
    return {
        "status": summary["status"],
        "limit": LIMIT,
        "requests": stats.requests,
        "acknowledged": stats.acknowledged,
        "load_s": wall,
        "cpu_s": cpu,
        "cpu_ms_per_request": cpu / max(1, stats.acknowledged) * 1000,
        "requests_per_s": stats.requests / wall,
        "progress_events": len(events),
    }
