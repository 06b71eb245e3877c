"""Apply a plan: walk its batches through the Braze client, recording each one in the ledger.

Acknowledged batches are skipped and batches left `sending` by a killed process go out flagged in doubt.
A first SIGINT/SIGTERM lets in-flight requests finish and starts no new batch (the client handles it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import polars as pl

from braze_migrate.planner import scan_batches
from braze_migrate.settings import LoadSettings
from connectors.braze.client import BatchRequest, BrazeLoader
from connectors.braze.ratelimit import parse_rate
from connectors.state.ledger import Ledger

CHUNK = 2_000  # batches read from the plan at a time: memory stays bounded for plans of any size


def iter_batches(plan_dir: Path, statuses: dict[int, str]) -> Iterator[BatchRequest]:
    """Batches still to send, in order, read from the plan in chunks."""
    todo = sorted(b for b, s in statuses.items() if s in ("planned", "sending"))
    scan = scan_batches(plan_dir, ["batch_no", "body"])
    for start in range(0, len(todo), CHUNK):
        chunk = todo[start:start + CHUNK]
        rows = scan.filter(pl.col("batch_no").is_in(chunk)).collect().sort("batch_no")
        for batch_no, body in rows.iter_rows():
            yield BatchRequest(batch_no=batch_no, body=body.encode(), in_doubt=statuses[batch_no] == "sending")


def apply_plan(run_id: str, plan_dir: Path, ledger: Ledger, settings: LoadSettings, endpoint: str, api_key: str,
               *, on_progress: Callable[[int, int], None] | None = None, transport=None):
    """Send every unacknowledged batch of the plan; returns the client's LoadStats."""
    statuses = ledger.batch_statuses(run_id)
    total = len(statuses)
    done = sum(1 for s in statuses.values() if s in ("acknowledged", "pending"))
    loader = BrazeLoader(
        endpoint, api_key, rate=parse_rate(settings.rate_limit), concurrency=settings.concurrency,
        timeout=settings.timeout_seconds, max_attempts=settings.max_attempts,
        max_retry_seconds=settings.max_retry_seconds, in_doubt_policy=settings.in_doubt, transport=transport,
        backoff=settings.retry_backoff_seconds,
    )
    progress = {"done": done}

    def on_sending(batch_no: int) -> None:
        ledger.mark_sending(run_id, batch_no)

    def on_result(result) -> None:
        ledger.record_result(run_id, result)
        progress["done"] += 1
        if on_progress is not None:
            on_progress(progress["done"], total)

    if on_progress is not None:
        on_progress(done, total)
    return loader.run_sync(iter_batches(plan_dir, statuses), on_sending=on_sending, on_result=on_result)
