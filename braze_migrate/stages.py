"""The stages of a load run as functions of plain parameters: what the flows run as Prefect tasks and what
`--no-prefect` calls directly, so both paths run the very same code.

Every stage takes the run's public options (`settings.public_options`: JSON values, no secret), resolves
its settings from them plus its own environment (credentials, the ledger URL), opens what it needs and
closes it before returning: nothing live (a database connection, an engine) travels between stages, so a
stage can run in another process or on another machine (Dask, a Prefect worker).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from braze_migrate import progress
from braze_migrate.applier import apply_plan
from braze_migrate.credentials import resolve_credentials
from braze_migrate.engine import Engine, Prepared
from braze_migrate.progress import ProgressSink
from braze_migrate.settings import load_settings
from braze_migrate.summary import RunSummary, WorkerReport

Options = Mapping[str, Any]


def plan(kind: str, source: str, mapping: str | None, options: Options,
         on_progress: ProgressSink | None = None) -> Prepared:
    """Extract, normalize, diff and pack into a plan in the state folder, or pick up the unfinished plan of
    this source (a run is finished before anything new is planned). Progress events go to `on_progress`
    and to the process's listeners (braze_migrate/progress.py)."""
    engine = Engine(load_settings(**options))
    try:
        return engine.prepare(kind, str(source), mapping=str(mapping) if mapping else None,
                              on_progress=progress.fan_out(on_progress))
    finally:
        engine.close()


def load(prepared: Prepared, options: Options, on_progress: ProgressSink | None = None) -> int:
    """Send the plan's unacknowledged batches (this process as the run's main worker, waiting until every
    batch is final, taking over what lost workers left). Returns the batches this process handled."""
    settings = load_settings(**options)
    endpoint, api_key = resolve_credentials(settings)
    engine = Engine(settings)
    try:
        with progress.watching(engine.ledger, prepared.run_id, progress.fan_out(on_progress)):
            return engine.apply(prepared, endpoint, api_key).batches
    finally:
        engine.close()


def load_worker(run_id: str, options: Options) -> WorkerReport:
    """One more worker of a planned run: claim and send its batches until none is left, then return."""
    settings = load_settings(**options)
    endpoint, api_key = resolve_credentials(settings)
    engine = Engine(settings)
    try:
        stats = apply_plan(run_id, engine.run_dir(run_id) / "plan", engine.ledger, settings, endpoint, api_key,
                           wait=False)
    finally:
        engine.close()
    return WorkerReport(worker_id=stats.worker_id, pid=os.getpid(), batches=stats.batches,
                        acknowledged=stats.acknowledged, pending=stats.pending, requests=stats.requests,
                        throttled=stats.throttled, leases=stats.leases)


def commit(prepared: Prepared, options: Options, started: float, on_progress: ProgressSink | None = None) -> RunSummary:
    """Advance the snapshot with what Braze acknowledged; write the rejects file; the run's summary
    (`started`: time.monotonic() when the run began, for its duration)."""
    engine = Engine(load_settings(**options))
    try:
        return engine.summarize(prepared, started=started, on_progress=progress.fan_out(on_progress))
    finally:
        engine.close()


@dataclass(frozen=True)
class Stages:
    """The stage callables a run goes through: these functions, or the flows' tasks wrapping them."""

    plan: Callable[..., Prepared] = plan
    load: Callable[..., Any] = load
    commit: Callable[..., RunSummary] = commit


def run_load(kind: str, source: str, mapping: str | None, options: Options, stages: Stages = Stages()) -> RunSummary:
    """plan → load → commit: the body of the `backfill` and `sync` flows and of `--no-prefect`."""
    started = time.monotonic()
    prepared = stages.plan(kind, source, mapping, options)
    stages.load(prepared, options)
    return stages.commit(prepared, options, started)
