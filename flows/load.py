"""Prefect flows `backfill` and `sync`: wiring only. The flow owns the run: each stage of
`braze_migrate.run.stages` is a task taking plain parameters (paths, ids) and the run's settings (`LoadSettings`,
resolved once from the flow's parameters), and
`--no-prefect` runs the same stage functions without these decorators.

Retries live in the Braze client alone (one retry layer); tasks have none, so attempts never multiply.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed, Failed, State

from braze_migrate.run import stages
from braze_migrate.run.advice import next_line
from braze_migrate.run.catalogs_stage import catalogs_stage
from braze_migrate.run.engine import Prepared
from braze_migrate.run.public import GuardReport, UnitsRunner
from braze_migrate.settings import ConfigError, LoadSettings, environment_options, settings_from_parameters
from braze_migrate.summary import RunStatus, RunSummary, RunUnfinished
from connectors import readiness
from connectors.states import Outcome
from flows import artifacts, decisions, tonight
from flows.decisions import called, cleanly
from flows.options import with_sections

SOURCE_HELP = ("export folder, object-store URI (s3://, gs://, az://) or mapping file; may name the run's date: "
               "s3://bucket/braze/{date:%Y-%m-%d}/ (tokens {date}, {yesterday}, any strftime format)")
MAPPING_HELP = "mapping file for a folder or URI source (docs/sources.md)"
STATE_HELP = ("state folder (the ledger, snapshot, plans and rejects files): an absolute path on the worker; a "
              "deployment run given a relative one ends Failed saying so")
DATE_HELP = ("the logical date the source's {date} is filled with (YYYY-MM-DD); unset: the run's scheduled time "
             "in its schedule's time zone")


@task(name="ready", cache_policy=NO_CACHE)
@cleanly
def ready_task(source: str, settings: LoadSettings) -> readiness.Ready:
    """Wait for the export's readiness marker (`ready_marker`), checking a manifest; its progress artifact
    (`<kind>-readiness`) shows the wait against the deadline. Past it: Failed with one line."""
    if not settings.ready_marker:
        return readiness.Ready(source, None)
    waiting = artifacts.Waiting(source, settings.ready_marker)
    ready = stages.ready(source, settings, on_wait=waiting)
    get_run_logger().info("export ready: %s", ready.line)
    return ready


@task(name="plan", cache_policy=NO_CACHE)
@cleanly
def plan_task(kind: str, source: str, mapping: str | None, settings: LoadSettings, plan_while_loading: bool = True,
              units_runner: UnitsRunner | None = None) -> Prepared:
    """Extract, normalize, diff and pack, or pick up the unfinished plan of this source; its progress
    artifact (`<kind>-planning`) follows the reading and planning. `units_runner`: where the units are
    planned (the parallel flows: `plan-unit` tasks on Dask)."""
    progress = artifacts.Progress(None, kind, stage="planning")
    prepared = stages.plan(kind, source, mapping, settings, on_progress=progress,
                           plan_while_loading=plan_while_loading, units_runner=units_runner)
    progress.finish()
    get_run_logger().info("%s", artifacts.plan_line(prepared, settings))
    return prepared


@task(name="guard", cache_policy=NO_CACHE)
@cleanly
def guard_task(prepared: Prepared, settings: LoadSettings) -> GuardReport | None:
    """Check the plan's figures against what Braze acknowledged before anything is sent (braze_migrate/plan/guards.py)."""
    return stages.guard(prepared, settings)


@task(name="load", cache_policy=NO_CACHE)
@cleanly
def load_task(prepared: Prepared, settings: LoadSettings) -> int | State:
    """Send the plan's unacknowledged batches; progress goes to a progress artifact. Ends Failed (this task,
    not a later one) when batches are left pending or unsent; the commit still runs and says what to do."""
    progress = artifacts.Progress(prepared.run_id)
    with artifacts.forwarding("connectors.braze"):  # "Braze is not answering: ..." while retries fail
        batches = stages.load(prepared, settings, on_progress=progress)
    progress.finish()
    left, total = stages.left_over(prepared, settings)
    if left:
        message = (f"{left} of {total} batches not acknowledged (pending or in doubt): the run's summary "
                   "says how to resume")
        return Failed(message=message, data=decisions.FailedWith(message, batches))
    return batches


@task(name="commit", cache_policy=NO_CACHE)
@cleanly
def commit_task(prepared: Prepared, settings: LoadSettings, started: float) -> RunSummary:
    """Advance the snapshot with what Braze acknowledged; write the rejects file and the summary."""
    return stages.commit(prepared, settings, started)


@task(name="catalogs", cache_policy=NO_CACHE)
@cleanly
def catalogs_task(prepared: Prepared, settings: LoadSettings, summary: RunSummary) -> RunSummary:
    """Sync the export's catalogs to Braze's catalog item endpoints after the commit (braze_migrate/run/catalogs_stage.py)."""
    return catalogs_stage(prepared, settings, summary)


# Called for their results: the load task may end Failed (batches left) and the commit still runs after it.
TASKS = stages.Stages(plan=called(plan_task), load=called(load_task), commit=called(commit_task),
                      guard=called(guard_task), catalogs=called(catalogs_task), ready=called(ready_task))


def run(kind: str, source: str, mapping: str | None, state: str, sections: dict, tasks: stages.Stages = TASKS,
        day: date | str | None = None) -> State:
    """The body of the load flows: the run's settings from its parameters (`state` and the option `sections`),
    tonight's source (its template filled with the logical date `day`), the stages as tasks (`tasks`: the
    parallel flows swap the load), a person's decision when a deployment run is held or left events in doubt,
    and user errors as a Failed state with one line (no traceback)."""
    try:
        settings = settings_from_parameters(state, sections)
        check_configured(settings)
        if from_env := environment_options(sections):  # docs/prefect.md, "Parameters"
            get_run_logger().info("options from this worker's environment (the run's parameters leave them out): "
                                  "%s", ", ".join(f"{name}={getattr(settings, name)}" for name in from_env))
        logical = tonight.logical_date(day)
        source = readiness.resolve(source, logical)
        tonight.rename(tonight.run_name(kind, logical, str(settings.state)))
        get_run_logger().info("%s", artifacts.intent_line(kind, source, mapping, settings, logical))
        timeout = settings.decision_timeout
        tasks = replace(tasks, decide=decisions.guard_decider(timeout), plan=_named(tasks.plan, kind, logical,
                                                                                        str(settings.state)))
        summary = stages.run_load(kind, source, mapping, settings, tasks)
        # In doubt: settle --check, the batches it could not decide, then the plain resume (run/advice.py).
        summary, answers = decisions.settle_in_doubt(
            summary, settings, timeout,
            lambda: stages.run_load(kind, source, mapping, settings.model_copy(update={"in_doubt": "skip"}), tasks))
        if answers:
            summary = summary.model_copy(update={
                "decisions": [*(summary.decisions or []), *map(vars, answers)],
                "waited_s": (summary.waited_s or 0.0) + sum(a.waited_s for a in answers)})
    except Exception as exc:
        failed = decisions.failed(exc)  # logs its line once (a task that raised it logged it already)
        if failed is None:
            raise
        return failed
    return finish(summary)


def _named(plan, kind: str, logical: date, state: str):
    """The plan stage, renaming the flow run with the run id once it is known."""

    def plan_and_name(*args, **kwargs):
        prepared = plan(*args, **kwargs)
        tonight.rename(tonight.run_name(kind, logical, state, prepared.run_id))
        return prepared

    return plan_and_name


def check_configured(settings: LoadSettings) -> None:
    """A deployment run must be given its state folder (its required `state` parameter) as an absolute path: a
    schedule activated before it was configured must not create one inside the checkout the worker runs from."""
    if decisions.in_deployment() and not settings.state.is_absolute():
        raise ConfigError(f"this deployment's state folder is {str(settings.state)!r}, not an absolute path: set "
                          "its `state` parameter (prefect.yaml, or `-p state=/srv/braze-migrate/state`), then "
                          "resume its schedule")


def finish(summary: RunSummary) -> State:
    """Publish the summary and end the flow with it: Completed, or Failed when anything is left to do.
    The state carries the summary (`state.result(raise_on_failure=False)`), which the CLI renders."""
    artifacts.publish_summary(summary)
    logger = get_run_logger()
    logger.info("%s run %s %s: %d requests, %d rejected rows, %d pending", summary.kind, summary.run_id,
                summary.status, summary.requests, summary.total(Outcome.REJECTED), summary.total(Outcome.PENDING))
    if summary.rejects:
        logger.warning("%d rejected rows or cells: see %s%s", summary.rejects, summary.rejects_file,
                       f" ({summary.erased} of them rows of users deleted from Braze: rejected until "
                       "`braze-migrate undelete ID`, nothing to fix in the warehouse)" if summary.erased else "")
    if summary.unchanged_since:
        logger.info("%s", summary.message)
        return Completed(message=summary.message, data=summary)
    if summary.status is RunStatus.HELD:
        return Failed(message=summary.message, data=RunUnfinished(summary.message, summary))
    if summary.status is not RunStatus.COMPLETED:
        # The decision table's steps (braze_migrate/run/advice.py), as the CLI's last line: the failed alert
        # carries this message, so it must never skip a `settle --check` the report asks for first.
        message = next_line(summary, every_step=True)
        return Failed(message=message, data=RunUnfinished(message, summary))
    return Completed(message="completed", data=summary)


@flow(name="backfill", flow_run_name=tonight.initial_name, log_prints=False)
@with_sections(source=SOURCE_HELP, state=STATE_HELP, mapping=MAPPING_HELP, date=DATE_HELP)
def backfill(source: str, state: str, mapping: str | None = None, date: date | None = None, **sections) -> State:
    """Load an export's history into Braze (deltas against the state folder, so re-running sends nothing new)."""
    return run("backfill", source, mapping, state, sections, day=date)


@flow(name="sync", flow_run_name=tonight.initial_name, log_prints=False)
@with_sections(source=SOURCE_HELP, state=STATE_HELP, mapping=MAPPING_HELP, date=DATE_HELP)
def sync(source: str, state: str, mapping: str | None = None, date: date | None = None, **sections) -> State:
    """Nightly: send only what changed since the last acknowledged load, never an occurrence twice."""
    return run("sync", source, mapping, state, sections, day=date)
