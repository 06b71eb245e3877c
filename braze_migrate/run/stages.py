"""The stages of a load run as functions of plain parameters: what the flows run as Prefect tasks and what
`--no-prefect` calls directly, so both paths run the very same code.

Every stage takes the run's settings (`LoadSettings`, resolved once by the CLI or the flow), takes Braze's
credentials from its own environment, opens what it needs and closes it before returning: nothing live (a
database connection, an engine) travels between stages, and no secret (the settings sent to another process
leave the ledger URL behind, which that process takes from its environment), so a stage can run in another
process or on another machine (Dask, a Prefect worker).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from braze_migrate import progress
from braze_migrate.load.applier import apply_plan
from braze_migrate.plan import guards
from braze_migrate.plan.guards import GuardReport
from braze_migrate.plan.planner import UnitsRunner
from braze_migrate.progress import ProgressSink
from braze_migrate.run.advice import with_advice
from braze_migrate.run.catalogs_stage import catalogs_stage
from braze_migrate.run.credentials import resolve_credentials
from braze_migrate.run.deletes_stage import deletes_stage
from braze_migrate.run.engine import Engine, Prepared
from braze_migrate.run.identities_stage import identities_stage
from braze_migrate.run.workers import still_planning
from braze_migrate.settings import ConfigError, LoadSettings
from braze_migrate.summary import RunStatus, RunSummary, WorkerReport
from connectors import readiness
from connectors.state.ledger_base import LedgerUnavailable
from connectors.state.lock import StateInUse, run_lock
from connectors.states import BatchState, RunState


def ready(source: str, settings: LoadSettings, on_wait: Callable[[float, float, str], None] | None = None
          ) -> readiness.Ready:
    """Wait until the export folder holds its readiness marker (`ready_marker`; none set: at once), checking a
    manifest's files; past `ready_deadline` seconds, ExportNotReady (one line)."""
    return readiness.wait_ready(str(source), settings.ready_marker or None, deadline_s=settings.ready_deadline,
                                poll_s=settings.ready_poll_seconds, on_wait=on_wait)


def plan(kind: str, source: str, mapping: str | None, settings: LoadSettings,
         on_progress: ProgressSink | None = None, plan_while_loading: bool = True,
         units_runner: UnitsRunner | None = None) -> Prepared:
    """Extract, normalize, diff and pack into a plan in the state folder, or pick up the unfinished plan of
    this source (a run is finished before anything new is planned). Progress events go to `on_progress`
    and to the process's listeners (braze_migrate/progress.py); `units_runner` plans units elsewhere
    (planner.UnitsRunner: the parallel flows' Dask workers)."""
    engine = Engine(settings)
    try:
        return engine.prepare(kind, str(source), mapping=str(mapping) if mapping else None,
                              on_progress=progress.fan_out(on_progress), plan_while_loading=plan_while_loading,
                              units_runner=units_runner)
    finally:
        engine.close()


def load(prepared: Prepared, settings: LoadSettings, on_progress: ProgressSink | None = None) -> int:
    """Send the plan's unacknowledged batches (this process as the run's main worker, waiting until every
    batch is final, taking over what lost workers left). Returns the batches this process handled."""
    endpoint, api_key = resolve_credentials(settings)
    engine = Engine(settings)
    try:
        sink = progress.fan_out(on_progress)
        with progress.watching(engine.ledger, prepared.run_id, sink):
            return engine.apply(prepared, endpoint, api_key, on_plan_progress=sink).batches
    finally:
        engine.close()


def load_worker(run_id: str, settings: LoadSettings) -> WorkerReport:
    """One more worker of a run: claim and send its batches until none is left and none is still to be
    planned, then return."""
    endpoint, api_key = resolve_credentials(settings)
    engine = Engine(settings)
    plan_dir = engine.run_dir(run_id) / "plan"
    try:
        stats = apply_plan(run_id, plan_dir, engine.ledger, settings, endpoint, api_key, wait=False,
                           planning=still_planning(engine.ledger, run_id, plan_dir))
    finally:
        engine.close()
    return WorkerReport(worker_id=stats.worker_id, pid=os.getpid(), batches=stats.batches,
                        acknowledged=stats.acknowledged, pending=stats.pending, requests=stats.requests,
                        throttled=stats.throttled, leases=stats.leases)


def commit(prepared: Prepared, settings: LoadSettings, started: float, on_progress: ProgressSink | None = None) -> RunSummary:
    """Advance the snapshot with what Braze acknowledged; write the rejects file; the run's summary
    (`started`: time.monotonic() when the run began, for its duration)."""
    engine = Engine(settings)
    try:
        return engine.summarize(prepared, started=started, on_progress=progress.fan_out(on_progress))
    finally:
        engine.close()


def left_over(prepared: Prepared, settings: LoadSettings) -> tuple[int, int]:
    """(batches not acknowledged after the load: pending, in doubt or never sent; batches the run has): from the
    ledger, so a first load planned while loading counts the batches it planned."""
    engine = Engine(settings)
    try:
        counts = engine.ledger.status_counts(prepared.run_id)
        return sum(n for status, n in counts.items() if status != BatchState.ACKNOWLEDGED), sum(counts.values())
    finally:
        engine.close()


def guard(prepared: Prepared, settings: LoadSettings) -> GuardReport | None:
    """The guard figures of a plan about to be sent (None once any of its batches left). A figure over its
    threshold that `settings.accept` does not accept holds the run: its ledger status becomes `held`, so
    nothing joins or sends it until the same command is run again with `--accept`."""
    engine = Engine(settings)
    try:
        report = guards.guard_run(engine.state, prepared.plan_dir, prepared.run_id, engine.ledger,
                                  guards.GuardSettings.of(settings), settings.accept)
        if report is not None and (report.held or engine.ledger.run(prepared.run_id).status != RunState.LOADING):
            # A run killed after it began loading but before a batch left is judged again on resume: held, it
            # waits like any held run; passed, it stays loading (it is not planned again).
            engine.ledger.set_run_status(prepared.run_id, RunState.HELD if report.held else RunState.PLANNED)
        return report
    finally:
        engine.close()


def held(kind: str, source: str, mapping: str | None, prepared: Prepared, settings: LoadSettings,
         report: GuardReport, note: str | None = None) -> RunSummary:
    """The summary of a run the guards held: nothing sent, the plan kept, the command that accepts it."""
    command = (f"braze-migrate {kind} {source}" + (f" --mapping {mapping}" if mapping else "")
               + f" --state {settings.state}")
    summary = RunSummary(
        run_id=prepared.run_id, kind=kind, source=str(source), state=str(settings.state), status=RunStatus.HELD,
        resumed=prepared.resumed, batches=prepared.batches, guards=report.to_dict(),
        message=report.message(command) + (f" ({note})" if note else ""),
        resume_command=f"{command} --accept {report.accept_value()}", notes=list(prepared.notes),
    )
    engine = Engine(settings)
    try:
        engine.ledger.set_run_status(prepared.run_id, RunState.HELD, summary.to_json())
    finally:
        engine.close()
    return summary


def finish(summary: RunSummary, settings: LoadSettings) -> RunSummary:
    """Store the summary of a run whose every stage ended (with what it waited for); only such a run's export can
    later be "unchanged since" it."""
    engine = Engine(settings)
    try:
        engine.finished(summary)
    finally:
        engine.close()
    return summary


@dataclass(frozen=True)
class Answer:
    """A person's decision on a held run: what was asked, the answer ("accept", "hold"; None: nobody answered
    in time), who answered (as they gave it on the form) and when, and how long the run waited for it."""

    asked: str
    decision: str | None
    by: str = ""
    at: str = ""
    waited_s: float = 0.0

    def line(self) -> str:
        who = f" by {self.by}" if self.by else ""
        when = f" at {self.at}" if self.at else ""
        answer = self.decision or "nobody answered (holding)"
        return f"decision on {self.asked}: {answer}{who}{when}, after {self.waited_s:.0f} s of waiting"


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


Decide = Callable[[GuardReport, Prepared], "Answer | str | None"]


@dataclass(frozen=True)
class Stages:
    """The stage callables a run goes through: these functions, or the flows' tasks wrapping them.
    `decide`: who answers when the guards hold a plan ("accept", "hold", or None when nobody answered);
    without it a held run ends held (the CLI prints the command that accepts it)."""

    plan: Callable[..., Prepared] = plan
    ready: Callable[..., readiness.Ready] = ready
    finish: Callable[..., RunSummary] = finish
    load: Callable[..., Any] = load
    commit: Callable[..., RunSummary] = commit
    guard: Callable[..., GuardReport | None] = guard
    decide: Decide | None = None
    deletes: Callable[..., RunSummary] = deletes_stage  # user deletes after the commit (braze_migrate/run/deletes_stage.py)
    catalogs: Callable[..., RunSummary] = catalogs_stage  # catalog sync after them (braze_migrate/run/catalogs_stage.py)
    # identify and rename after the deletes (braze_migrate/run/identities_stage.py)
    identities: Callable[..., RunSummary] = identities_stage


def run_load(kind: str, source: str, mapping: str | None, settings: LoadSettings, stages: Stages = Stages()) -> RunSummary:
    """plan → guard → load → commit: the body of the `backfill` and `sync` flows and of `--no-prefect`.

    The run holds its state folder (`connectors.state.lock`): a second run on it is refused at once."""
    url = settings.ledger_url.get_secret_value() if settings.ledger_url else None
    export = stages.ready(source, settings)
    answers: list[Answer] = []
    try:
        with run_lock(settings.state, f"{kind} {source}", ledger_url=url) as lock:
            started = time.monotonic()
            prepared = stages.plan(kind, source, mapping, settings)
            lock.name_run(prepared.run_id)
            if prepared.unchanged is not None:
                return _waited(RunSummary.coerce(prepared.unchanged), export, answers)
            report = stages.guard(prepared, settings)
            if report is not None and report.held:
                answer = _answer(stages.decide(report, prepared) if stages.decide else "hold", report)
                answers.append(answer)
                started += answer.waited_s  # waiting for a person is not loading time
                if answer.decision != "accept":
                    note = None if answer.decision == "hold" or stages.decide is None else "nobody answered in time"
                    summary = held(kind, source, mapping, prepared, settings, report, note)
                    return with_advice(_waited(summary, export, answers))
                settings = settings.model_copy(
                    update={"accept": [*report.accepted, *(f.accept for f in report.held)]})
                report = stages.guard(prepared, settings)
            stages.load(prepared, settings)
            summary = stages.deletes(prepared, settings, stages.commit(prepared, settings, started))
            summary = stages.identities(prepared, settings, summary)
            summary = stages.catalogs(prepared, settings, summary)
            summary = summary if report is None else summary.model_copy(update={"guards": report.to_dict()})
            return stages.finish(with_advice(_waited(summary, export, answers)), settings)
    except (StateInUse, LedgerUnavailable) as exc:
        raise ConfigError(str(exc)) from None


def _answer(answer: Answer | str | None, report: GuardReport) -> Answer:
    if isinstance(answer, Answer):
        return answer
    return Answer(report.message(), answer, "this command (no --accept given)" if answer == "hold" else "", now_iso())


def _waited(summary: RunSummary, export: readiness.Ready, answers: list[Answer]) -> RunSummary:
    """The summary with what the run waited for, apart from its duration: the export, then each decision."""
    waited = export.waited_s + sum(a.waited_s for a in answers)
    update: dict[str, Any] = {"waited_s": round(waited, 3) if waited or answers or export.marker else None}
    if export.marker:
        update["export"] = export.line
    if answers:
        update["decisions"] = [asdict(a) for a in answers]
    return summary.model_copy(update=update)
