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

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.futures import wait
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import State

try:
    from prefect_dask import DaskTaskRunner
except ImportError as exc:  # an extra, so the base install stays without Dask and distributed
    raise ImportError("the Dask flows need the dask extra: pip install 'braze-migrate[dask]' "
                      "(`make venv` installs it)") from exc

from braze_migrate import stages
from braze_migrate.engine import Prepared, open_run_ledger
from braze_migrate.settings import load_settings
from braze_migrate.summary import WorkerReport
from flows import artifacts
from flows.load import MAPPING_HELP, SOURCE_HELP, commit_task, finish, flow_options, plan_task
from flows.options import with_options

LOCAL_CLUSTER = {"n_workers": 2, "threads_per_worker": 1, "processes": True}
WATCH_EVERY_S = 1.0
WORKERS_HELP = "load workers (Dask tasks) sharing the run's batches and one rate budget"


def dask_runner(address: str | None = None, **cluster_kwargs) -> DaskTaskRunner:
    """A DaskTaskRunner on the cluster at `address`, or on a new local cluster (two worker processes)."""
    if address:
        return DaskTaskRunner(address=address)
    return DaskTaskRunner(cluster_kwargs={**LOCAL_CLUSTER, **cluster_kwargs})


@task(name="load-worker", cache_policy=NO_CACHE)
def load_worker_task(run_id: str, options: dict) -> WorkerReport:
    """One worker of the run, on a Dask worker: claim and send batches until none is left."""
    report = stages.load_worker(run_id, options)
    get_run_logger().info("worker %s: %d batches, %d requests, %d throttled, %d budget leases",
                          report.worker_id, report.batches, report.requests, report.throttled, report.leases)
    return report


@task(name="drain", cache_policy=NO_CACHE)
def drain_task(prepared: Prepared, options: dict) -> int:
    """Wait until every batch is final, sending what a lost worker left (its claims, or in doubt)."""
    return stages.load(prepared, options)


def run_parallel(kind: str, source: str, mapping: str | None, workers: int, options: dict) -> State:
    """plan → N load workers on Dask → drain → commit → publish, ending Failed when anything is pending."""
    started = time.monotonic()
    options = flow_options(options)
    options["state"] = str(Path(options["state"]).resolve())  # the workers' cwd may differ
    logger = get_run_logger()
    prepared = plan_task(kind, source, mapping, options)
    progress = artifacts.Progress(prepared.run_id)
    with _workers_use_this_api():
        futures = [load_worker_task.submit(prepared.run_id, options) for _ in range(workers)]
    _watch(options, prepared.run_id, futures, progress)
    reports = []
    for future in futures:
        try:
            reports.append(future.result())
        except Exception as exc:  # noqa: BLE001 - not silent: the drain sends its batches, or fails alike
            logger.warning("a load worker failed (%s): the drain takes over its batches", type(exc).__name__)
    taken_over = drain_task(prepared, options)
    progress.finish()
    summary = stages.deletes_stage(prepared, options, commit_task(prepared, options, started))  # user deletes
    summary = summary.model_copy(update={"workers": reports, "drained_batches": taken_over})
    logger.info("%s run %s: %d requests by %d workers", kind, summary.run_id, summary.requests, len(reports))
    return finish(summary)


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


def _watch(options: dict, run_id: str, futures: list, progress: artifacts.Progress) -> None:
    """Progress from the ledger while the workers run (they are in other processes)."""
    ledger = open_run_ledger(load_settings(**options))
    try:
        while True:
            running = wait(futures, timeout=WATCH_EVERY_S).not_done
            counts = ledger.status_counts(run_id)
            progress.update(counts.get("acknowledged", 0) + counts.get("pending", 0), sum(counts.values()))
            if not running:
                return
    finally:
        ledger.close()


@flow(name="backfill-parallel", flow_run_name="backfill-parallel-{source}", task_runner=dask_runner(),
      log_prints=False)
@with_options(source=SOURCE_HELP, mapping=MAPPING_HELP, workers=WORKERS_HELP)
def backfill_parallel(source: str, mapping: str | None = None, workers: int = 2, **options) -> State:
    """`backfill` with the load spread over `workers` Dask tasks sharing one rate budget."""
    return run_parallel("backfill", source, mapping, workers, options)


@flow(name="sync-parallel", flow_run_name="sync-parallel-{source}", task_runner=dask_runner(), log_prints=False)
@with_options(source=SOURCE_HELP, mapping=MAPPING_HELP, workers=WORKERS_HELP)
def sync_parallel(source: str, mapping: str | None = None, workers: int = 2, **options) -> State:
    """`sync` with the load spread over `workers` Dask tasks sharing one rate budget."""
    return run_parallel("sync", source, mapping, workers, options)
