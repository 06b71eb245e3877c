"""Prefect flows `backfill-parallel` and `sync-parallel`: the load stage fanned out as worker tasks on Dask.

Plan and commit stay single tasks in the flow's process. The load is N coarse `load-worker` tasks on a
Dask cluster (a local one of two worker processes by default), each claiming batches from the shared ledger
until none is left and drawing on the rate budget shared through it; then a `drain` task takes over
whatever a lost worker left, and the commit runs once every batch is final. Workers on other machines need
the state folder on a shared filesystem and the ledger in PostgreSQL (`BRAZE_MIGRATE_LEDGER_URL`), and the
Braze and ledger settings in their environment: secrets never travel as task parameters.

To use an existing cluster: `backfill_parallel.with_options(task_runner=dask_runner("tcp://host:8786"))`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.futures import wait
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Completed, Failed
from prefect_dask import DaskTaskRunner

from braze_migrate.applier import apply_plan
from braze_migrate.credentials import resolve_credentials
from braze_migrate.engine import Engine, Prepared
from braze_migrate.settings import load_settings
from flows import artifacts
from flows.load import commit_task, plan_task

LOCAL_CLUSTER = {"n_workers": 2, "threads_per_worker": 1, "processes": True}
WATCH_EVERY_S = 1.0


def dask_runner(address: str | None = None, **cluster_kwargs) -> DaskTaskRunner:
    """A DaskTaskRunner on the cluster at `address`, or on a new local cluster (two worker processes)."""
    if address:
        return DaskTaskRunner(address=address)
    return DaskTaskRunner(cluster_kwargs={**LOCAL_CLUSTER, **cluster_kwargs})


@task(name="load-worker", cache_policy=NO_CACHE)
def load_worker_task(run_id: str, options: dict) -> dict:
    """One worker of the run, on a Dask worker: claim and send batches until none is left."""
    settings = load_settings(**options)
    endpoint, api_key = resolve_credentials(settings)
    engine = Engine(settings)
    try:
        stats = apply_plan(run_id, engine.run_dir(run_id) / "plan", engine.ledger, settings, endpoint, api_key,
                           wait=False)
    finally:
        engine.close()
    report = {"worker_id": stats.worker_id, "pid": os.getpid(), "batches": stats.batches,
              "acknowledged": stats.acknowledged, "pending": stats.pending, "requests": stats.requests,
              "throttled": stats.throttled, "leases": stats.leases}
    get_run_logger().info("worker %s: %d batches, %d requests, %d throttled, %d budget leases",
                          stats.worker_id, stats.batches, stats.requests, stats.throttled, stats.leases)
    return report


@task(name="drain", cache_policy=NO_CACHE)
def drain_task(engine: Engine, prepared: Prepared) -> int:
    """Wait until every batch is final, sending what a lost worker left (its claims, or in doubt)."""
    endpoint, api_key = resolve_credentials(engine.settings)
    return engine.apply(prepared, endpoint, api_key).batches


def run_parallel(kind: str, source: str, workers: int, **options) -> dict:
    """plan → N load workers on Dask → drain → commit → publish, ending Failed when anything is pending."""
    started = time.monotonic()
    settings = load_settings(**options)
    options = {**options, "state": str(settings.state.resolve())}  # the workers' cwd may differ
    engine = Engine(settings)
    logger = get_run_logger()
    try:
        prepared = plan_task(engine, kind, source)
        engine.ledger.set_run_status(prepared.run_id, "loading")
        progress = artifacts.Progress(prepared.run_id)
        with _workers_use_this_api():
            futures = [load_worker_task.submit(prepared.run_id, options) for _ in range(workers)]
        _watch(engine, prepared.run_id, futures, progress)
        reports = []
        for future in futures:
            try:
                reports.append(future.result())
            except Exception as exc:  # noqa: BLE001 - not silent: the drain sends its batches, or fails alike
                logger.warning("a load worker failed (%s): the drain takes over its batches", type(exc).__name__)
        taken_over = drain_task(engine, prepared)
        progress.finish()
        summary = commit_task(engine, prepared, started)
    finally:
        engine.close()
    summary["workers"] = reports
    summary["drained_batches"] = taken_over
    artifacts.publish_summary(summary)
    logger.info("%s run %s %s: %d requests by %d workers", kind, summary["run_id"], summary["status"],
                summary["requests"], len(summary["workers"]))
    if summary["status"] != "completed":
        return Failed(message=f"{summary['status']}: resume with `{summary['resume_command']}`", data=summary)
    return Completed(message="completed", data=summary)


@contextmanager
def _workers_use_this_api() -> Iterator[None]:
    """Without a Prefect server (local mode) the flow's API is a temporary server of this process: hand its
    address to the Dask workers with the submitted context, or each would start a temporary server of its
    own (~20 s) and record its task runs there, out of the flow run's sight."""
    if PREFECT_API_URL.value():
        yield
        return
    with get_client(sync_client=True) as client:
        url = str(client.api_url)
    with temporary_settings(updates={PREFECT_API_URL: url}):
        yield


def _watch(engine: Engine, run_id: str, futures: list, progress: artifacts.Progress) -> None:
    """Progress from the ledger while the workers run (they are in other processes)."""
    while True:
        running = wait(futures, timeout=WATCH_EVERY_S).not_done
        counts = engine.ledger.status_counts(run_id)
        progress.update(counts.get("acknowledged", 0) + counts.get("pending", 0), sum(counts.values()))
        if not running:
            return


@flow(name="backfill-parallel", flow_run_name="backfill-parallel-{source}", task_runner=dask_runner(),
      log_prints=False)
def backfill_parallel(source: str, state: str = "state", rate_limit: str = "3000/3s", batch_size: int = 75,
                      batch_mode: str = "combined", in_doubt: str = "skip", concurrency: int = 100,
                      workers: int = 2):
    """`backfill` with the load spread over `workers` Dask tasks sharing one rate budget."""
    return run_parallel("backfill", source, workers, state=state, rate_limit=rate_limit, batch_size=batch_size,
                        batch_mode=batch_mode, in_doubt=in_doubt, concurrency=concurrency)


@flow(name="sync-parallel", flow_run_name="sync-parallel-{source}", task_runner=dask_runner(), log_prints=False)
def sync_parallel(source: str, state: str = "state", rate_limit: str = "3000/3s", batch_size: int = 75,
                  batch_mode: str = "combined", in_doubt: str = "skip", concurrency: int = 100, workers: int = 2):
    """`sync` with the load spread over `workers` Dask tasks sharing one rate budget."""
    return run_parallel("sync", source, workers, state=state, rate_limit=rate_limit, batch_size=batch_size,
                        batch_mode=batch_mode, in_doubt=in_doubt, concurrency=concurrency)
