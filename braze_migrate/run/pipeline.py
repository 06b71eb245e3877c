"""Plan and load at once: the load of a unit starts as soon as the planner has written and recorded it.

The planner runs in a thread of the loading process (Polars releases the GIL while it works, so the event
loop keeps sending). After each unit it writes the unit's files (planner.build_plan), then records the
unit's batches in the ledger as `planned`; only then can a worker claim them, so the write-ahead rule holds:
a batch is planned and recorded before it is sent. A run killed at any moment resumes with the same command:
units already written are kept (and recorded again, which is idempotent), the rest are planned the same way.
A backfill then takes about max(plan, load) plus the first unit's plan, not plan + load.

When the planner runs ahead of Braze's limit, it waits while more than `backlog` recorded batches are still
unsent (about ten seconds of sending): on two cores a planner far ahead only takes CPU from the sender,
which then falls below the limit, and the plan's lead gains nothing (docs/performance.md).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

import polars as pl

from braze_migrate.load.applier import WorkerStats, apply_plan
from braze_migrate.plan.planner import PlanInfo, build_plan
from braze_migrate.progress import ProgressSink
from braze_migrate.settings import LoadSettings
from connectors.braze.ratelimit import parse_rate
from connectors.state.ledger import LedgerBase
from connectors.state.snapshot import Snapshot
from connectors.states import BatchState, RunState

log = logging.getLogger(__name__)
BACKLOG_SECONDS = 10  # of sending at the rate limit: how far the planner may run ahead of the sender
BACKLOG_POLL_SECONDS = 0.2


def ledger_rows(batches: pl.DataFrame):
    """(batch_no, has_events_or_purchases, n_objects) per batch, as `LedgerBase.add_batches` takes them."""
    for b, a, e, p in batches.select("batch_no", "n_attributes", "n_events", "n_purchases").iter_rows():
        yield b, (e + p) > 0, a + e + p


class PlannerThread:
    """Builds (or resumes) a run's plan in a thread, recording each unit's batches in the ledger as it goes."""

    def __init__(self, run_id: str, ledger: LedgerBase, build: Callable[..., PlanInfo | None], *,
                 backlog: int | None = None) -> None:
        self.run_id = run_id
        self.backlog = backlog
        self._ledger = ledger.reopen()
        self._build = build
        self._stop = threading.Event()
        self.info: PlanInfo | None = None
        self.error: BaseException | None = None
        self.recorded = 0
        self._thread = threading.Thread(target=self._run, name=f"planner-{run_id}", daemon=True)

    def start(self) -> PlannerThread:
        self._thread.start()
        return self

    def planning(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        """Plan no further unit (the one being planned is finished and recorded)."""
        self._stop.set()

    def join(self) -> PlanInfo | None:
        """Wait for the planner; re-raise its error. None when it was stopped before the plan's end."""
        self._thread.join()
        self._ledger.close()
        if self.error is not None:
            raise self.error
        return self.info

    def _record(self, unit: int, batches: pl.DataFrame) -> None:
        if batches.height:
            self._ledger.add_batches(self.run_id, ledger_rows(batches))
            self.recorded += batches.height
        log.debug("unit %d planned: %d batches recorded", unit, batches.height)
        if self.backlog is not None:
            while not self._stop.is_set() and self._ledger.status_counts(self.run_id).get(BatchState.PLANNED, 0) > self.backlog:
                self._stop.wait(BACKLOG_POLL_SECONDS)

    def _run(self) -> None:
        try:
            self.info = self._build(on_unit=self._record, stop=self._stop.is_set)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller by join()
            self.error = exc


def plan_and_apply(run_id: str, source: str, snapshot: Snapshot, plan_dir: Path, ledger: LedgerBase,
                   settings: LoadSettings, endpoint: str, api_key: str, *, mapping: str | None = None,
                   resume: bool = False, on_progress=None, transport=None,
                   on_plan_progress: ProgressSink | None = None) -> tuple[PlanInfo | None, WorkerStats]:
    """Plan the run (or the rest of its plan) while sending what is planned; returns (plan info, or None when
    the run was stopped before planning ended, and this worker's stats). A planner error is raised once the
    batches already recorded are final, so nothing recorded is left half sent."""
    planner = PlannerThread(run_id, ledger, lambda **hooks: build_plan(
        source, snapshot, plan_dir, batch_size=settings.batch_size, batch_mode=settings.batch_mode,
        resend_in_doubt=settings.in_doubt == "resend", users_per_partition=settings.users_per_partition,
        mapping=mapping, resume=resume, on_progress=on_plan_progress, **hooks),
        backlog=max(1000, int(_per_second(settings.rate_limit) * BACKLOG_SECONDS))).start()
    try:
        stats = apply_plan(run_id, plan_dir, ledger, settings, endpoint, api_key, on_progress=on_progress,
                           transport=transport, planning=planner.planning)
    finally:
        planner.stop()  # a stopped or failed load plans no further unit
    try:
        info = planner.join()
    except Exception:
        if not ledger.batch_statuses(run_id):
            # Nothing was recorded, so nothing was sent: drop the run, so that the next command (once the
            # export is fixed) plans afresh instead of resuming this one.
            ledger.set_run_status(run_id, RunState.ABANDONED)
        raise
    return info, stats


def _per_second(rate_limit: str) -> float:
    rate = parse_rate(rate_limit)
    return rate.requests / rate.seconds
