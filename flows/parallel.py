"""Prefect flows `backfill-parallel` and `sync-parallel`: planning and loading fanned out as tasks on Dask.

The same stages and tasks as `backfill`/`sync` (flows/load.py: plan → guard → load → commit → deletes, the
state folder's lock, decisions), with the work fanned out: each unit of the plan (a partition of one dataset)
is normalized and diffed by a `plan-unit` task on a Dask worker while the flow packs the units in order, and
the plan is made complete first (a first load is not planned while loading here); then N coarse `load-worker` tasks on a Dask cluster (a local one of two
worker processes by default) claim batches from the shared ledger until none is left, drawing on the rate
budget shared through it; then the flow's own `load` task drains (sends whatever a lost worker left) and the
commit runs once every batch is final. Workers on other machines need
the state folder on a shared filesystem and the ledger in PostgreSQL (`BRAZE_MIGRATE_LEDGER_URL`), and the
Braze and ledger settings in their environment: secrets never travel as task parameters.

To use an existing cluster: `backfill_parallel.with_options(task_runner=dask_runner("tcp://host:8786"))`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
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

from braze_migrate import progress
from braze_migrate.run import stages
from braze_migrate.run.engine import Prepared, open_run_ledger
from braze_migrate.run.public import plan_unit_to_file
from braze_migrate.settings import LoadSettings
from braze_migrate.summary import RunSummary, WorkerReport
from connectors.state.snapshot import Snapshot
from flows import artifacts
from flows.load import MAPPING_HELP, SOURCE_HELP, STATE_HELP, TASKS, run
from flows.options import with_sections

LOCAL_CLUSTER = {"n_workers": 2, "threads_per_worker": 1, "processes": True}
WORKERS_HELP = "load workers (Dask tasks) sharing the run's batches and one rate budget"


def dask_runner(address: str | None = None, **cluster_kwargs) -> DaskTaskRunner:
    """A DaskTaskRunner on the cluster at `address`, or on a new local cluster (two worker processes)."""
    if address:
        return DaskTaskRunner(address=address)
    return DaskTaskRunner(cluster_kwargs={**LOCAL_CLUSTER, **cluster_kwargs})


@task(name="load-worker", cache_policy=NO_CACHE)
def load_worker_task(run_id: str, settings: LoadSettings) -> WorkerReport:
    """One worker of the run, on a Dask worker: claim and send batches until none is left (`settings` arrive
    without the ledger URL: the Dask worker's environment gives it)."""
    report = stages.load_worker(run_id, settings)
    get_run_logger().info("worker %s: %d batches, %d requests, %d throttled, %d budget leases",
                          report.worker_id, report.batches, report.requests, report.throttled, report.leases)
    return report


@task(name="plan-unit", cache_policy=NO_CACHE)
def plan_unit_task(u: int, plan_dir: Path, snapshot: Snapshot, held, csv_types, layout: dict) -> tuple[Path, dict]:
    """One unit of the plan (a partition of one dataset) normalized and diffed on a Dask worker; its objects
    go to a file in the (shared) state folder, for the flow's packer."""
    return plan_unit_to_file(u, plan_dir, snapshot, held, csv_types, layout)


class DaskUnits:
    """planner.UnitsRunner: the plan's units as `plan-unit` tasks on the flow's Dask cluster, `width` of
    them ahead of the packer (which stays in the flow: each unit continues the previous unit's open batch)."""

    def __init__(self, width: int) -> None:
        self.width = width

    def submit(self, u: int, *args):
        return plan_unit_task.submit(u, *args)


def parallel_tasks(workers: int) -> stages.Stages:
    """The load flow's tasks with the load fanned out: a complete plan first, then `workers` load-worker tasks
    on Dask, then the flow's own `load` task as the drain (it sends what a lost worker left and returns once
    every batch is final); the summary lists the workers."""
    reports: list[WorkerReport] = []
    drained: list[int] = []

    def load(prepared: Prepared, settings: LoadSettings):
        logger = get_run_logger()
        with _workers_use_this_api():
            futures = [load_worker_task.submit(prepared.run_id, settings) for _ in range(workers)]
        ledger = open_run_ledger(settings)
        try:  # the whole run's progress from the ledger while the workers (other processes) send
            with progress.watching(ledger, prepared.run_id, artifacts.Progress(prepared.run_id)):
                wait(futures)
        finally:
            ledger.close()
        for future in futures:
            try:
                reports.append(future.result())
            except Exception as exc:  # noqa: BLE001 - not silent: the drain sends its batches, or fails alike
                logger.warning("a load worker failed (%s): the drain takes over its batches", type(exc).__name__)
        result = TASKS.load(prepared, settings)
        drained.append(result if isinstance(result, int) else 0)
        return result

    def commit(prepared: Prepared, settings: LoadSettings, started: float) -> RunSummary:
        summary = TASKS.commit(prepared, settings, started)
        return summary.model_copy(update={"workers": list(reports), "drained_batches": sum(drained)})

    def plan(*args, **kwargs) -> Prepared:
        with _workers_use_this_api():
            return TASKS.plan(*args, plan_while_loading=False, units_runner=DaskUnits(2 * workers), **kwargs)

    return replace(TASKS, plan=plan, load=load, commit=commit)


def run_parallel(kind: str, source: str, mapping: str | None, state: str, workers: int, sections: dict) -> State:
    """The load flow's stages (plan → guard → load → commit → deletes) with the load spread over Dask."""
    state = str(Path(state).resolve())  # the workers' cwd may differ
    return run(kind, source, mapping, state, sections, parallel_tasks(workers))


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


@flow(name="backfill-parallel", flow_run_name="backfill-parallel-{source}", task_runner=dask_runner(),
      log_prints=False)
@with_sections(source=SOURCE_HELP, state=STATE_HELP, mapping=MAPPING_HELP, workers=WORKERS_HELP)
def backfill_parallel(source: str, state: str, mapping: str | None = None, workers: int = 2, **sections) -> State:
    """`backfill` with the load spread over `workers` Dask tasks sharing one rate budget."""
    return run_parallel("backfill", source, mapping, state, workers, sections)


@flow(name="sync-parallel", flow_run_name="sync-parallel-{source}", task_runner=dask_runner(), log_prints=False)
@with_sections(source=SOURCE_HELP, state=STATE_HELP, mapping=MAPPING_HELP, workers=WORKERS_HELP)
def sync_parallel(source: str, state: str, mapping: str | None = None, workers: int = 2, **sections) -> State:
    """`sync` with the load spread over `workers` Dask tasks sharing one rate budget."""
    return run_parallel("sync", source, mapping, state, workers, sections)
