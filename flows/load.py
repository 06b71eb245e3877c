"""Prefect flows `backfill` and `sync`: wiring only. The flow owns the run: each stage of
`braze_migrate.stages` is a task taking plain parameters (paths, ids, the public options), and
`--no-prefect` runs the same stage functions without these decorators.

Retries live in the Braze client alone (one retry layer); tasks have none, so attempts never multiply.
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed, Failed, State

from braze_migrate import stages
from braze_migrate.engine import Prepared
from braze_migrate.settings import load_settings, public_options
from braze_migrate.summary import RunStatus, RunSummary
from flows import artifacts
from flows.options import with_options

SOURCE_HELP = "export folder, object-store URI (s3://, gs://, az://) or mapping file"
MAPPING_HELP = "mapping file for a folder or URI source (docs/sources.md)"


@task(name="plan", cache_policy=NO_CACHE)
def plan_task(kind: str, source: str, mapping: str | None, options: dict) -> Prepared:
    """Extract, normalize, diff and pack, or pick up the unfinished plan of this source; its progress
    artifact (`<kind>-planning`) follows the reading and planning."""
    progress = artifacts.Progress(None, kind, stage="planning")
    prepared = stages.plan(kind, source, mapping, options, on_progress=progress)
    progress.finish()
    get_run_logger().info("%s", artifacts.plan_line(prepared, options))
    return prepared


@task(name="load", cache_policy=NO_CACHE)
def load_task(prepared: Prepared, options: dict) -> int:
    """Send the plan's unacknowledged batches; progress goes to a progress artifact."""
    progress = artifacts.Progress(prepared.run_id)
    batches = stages.load(prepared, options, on_progress=progress)
    progress.finish()
    return batches


@task(name="commit", cache_policy=NO_CACHE)
def commit_task(prepared: Prepared, options: dict, started: float) -> RunSummary:
    """Advance the snapshot with what Braze acknowledged; write the rejects file and the summary."""
    return stages.commit(prepared, options, started)


TASKS = stages.Stages(plan=plan_task, load=load_task, commit=commit_task)


def flow_options(options: dict) -> dict:
    """The flow's option parameters checked against the model, as the tasks' plain options."""
    return public_options(load_settings(**options))


def finish(summary: RunSummary) -> State:
    """Publish the summary and end the flow with it: Completed, or Failed when anything is left to do.
    The state carries the summary (`state.result(raise_on_failure=False)`), which the CLI renders."""
    artifacts.publish_summary(summary)
    logger = get_run_logger()
    logger.info("%s run %s %s: %d requests, %d rejected rows, %d pending", summary.kind, summary.run_id,
                summary.status, summary.requests, summary.total("rejected"), summary.total("pending"))
    if summary.rejects:
        logger.warning("%d rejected rows or cells: see %s", summary.rejects, summary.rejects_file)
    if summary.status is not RunStatus.COMPLETED:
        return Failed(message=f"{summary.status}: resume with `{summary.resume_command}`", data=summary)
    return Completed(message="completed", data=summary)


@flow(name="backfill", flow_run_name="backfill-{source}", log_prints=False)
@with_options(source=SOURCE_HELP, mapping=MAPPING_HELP)
def backfill(source: str, mapping: str | None = None, **options) -> State:
    """Load an export's history into Braze (deltas against the state folder, so re-running sends nothing new)."""
    get_run_logger().info("%s", artifacts.intent_line("backfill", source, mapping, options))
    return finish(stages.run_load("backfill", source, mapping, flow_options(options), TASKS))


@flow(name="sync", flow_run_name="sync-{source}", log_prints=False)
@with_options(source=SOURCE_HELP, mapping=MAPPING_HELP)
def sync(source: str, mapping: str | None = None, **options) -> State:
    """Nightly: send only what changed since the last acknowledged load, never an occurrence twice."""
    get_run_logger().info("%s", artifacts.intent_line("sync", source, mapping, options))
    return finish(stages.run_load("sync", source, mapping, flow_options(options), TASKS))
