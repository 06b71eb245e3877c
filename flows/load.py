"""Prefect flows `backfill` and `sync`: wiring only — each stage is a task, the engine does the work.

Retries live in the Braze client alone (one retry layer); tasks have none, so attempts never multiply.
"""

from __future__ import annotations

import time

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed, Failed

from braze_migrate.credentials import resolve_credentials
from braze_migrate.engine import Engine, Prepared
from braze_migrate.settings import load_settings
from flows import artifacts


@task(name="plan", cache_policy=NO_CACHE)
def plan_task(engine: Engine, kind: str, source: str, mapping: str | None = None) -> Prepared:
    """Extract, normalize, diff and pack — or pick up the unfinished plan of this source."""
    prepared = engine.prepare(kind, source, mapping)
    get_run_logger().info(
        "%s run %s: %d batches planned%s", kind, prepared.run_id, prepared.batches,
        " (resuming the unfinished plan)" if prepared.resumed else "",
    )
    return prepared


@task(name="load", cache_policy=NO_CACHE)
def load_task(engine: Engine, prepared: Prepared):
    """Send the plan's unacknowledged batches; progress goes to a progress artifact."""
    endpoint, api_key = resolve_credentials(engine.settings)
    progress = artifacts.Progress(prepared.run_id)
    stats = engine.apply(prepared, endpoint, api_key, on_progress=progress.update)
    progress.finish()
    return stats


@task(name="commit", cache_policy=NO_CACHE)
def commit_task(engine: Engine, prepared: Prepared, started: float) -> dict:
    """Advance the snapshot with what Braze acknowledged; write the rejects file and the summary."""
    return engine.finish(prepared, started=started)


def run_load(kind: str, source: str, mapping: str | None = None, **options) -> dict:
    """The body of both flows: plan → load → commit → publish, ending Failed when anything is pending."""
    started = time.monotonic()
    settings = load_settings(**options)
    engine = Engine(settings)
    logger = get_run_logger()
    try:
        prepared = plan_task(engine, kind, source, mapping)
        load_task(engine, prepared)
        summary = commit_task(engine, prepared, started)
    finally:
        engine.close()
    artifacts.publish_summary(summary)
    logger.info(
        "%s run %s %s: %d requests, %d rejected rows, %d pending", kind, summary["run_id"], summary["status"],
        summary["requests"], sum(d["rejected"] for d in summary["datasets"].values()),
        sum(d["pending"] for d in summary["datasets"].values()),
    )
    if summary["status"] != "completed":
        return Failed(message=f"{summary['status']}: resume with `{summary['resume_command']}`")
    if summary["rejects"]:
        logger.warning("%d rejected rows or cells: see %s", summary["rejects"], summary["rejects_file"])
    return Completed(message="completed")


@flow(name="backfill", flow_run_name="backfill-{source}", log_prints=False)
def backfill(source: str, mapping: str | None = None, state: str = "state", rate_limit: str = "3000/3s", batch_size: int = 75,
             batch_mode: str = "combined", in_doubt: str = "skip", concurrency: int = 100):
    """Load an export's history into Braze (deltas against the state folder, so re-running sends nothing new)."""
    return run_load("backfill", source, mapping, state=state, rate_limit=rate_limit, batch_size=batch_size,
                    batch_mode=batch_mode, in_doubt=in_doubt, concurrency=concurrency)


@flow(name="sync", flow_run_name="sync-{source}", log_prints=False)
def sync(source: str, mapping: str | None = None, state: str = "state", rate_limit: str = "3000/3s", batch_size: int = 75,
         batch_mode: str = "combined", in_doubt: str = "skip", concurrency: int = 100):
    """Nightly: send only what changed since the last acknowledged load, never an occurrence twice."""
    return run_load("sync", source, mapping, state=state, rate_limit=rate_limit, batch_size=batch_size,
                    batch_mode=batch_mode, in_doubt=in_doubt, concurrency=concurrency)
