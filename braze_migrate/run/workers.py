"""One more worker for the unfinished run of a state folder (`braze-migrate load-worker`).

The run itself is started as usual (`braze-migrate backfill|sync SOURCE --state DIR`): it plans, loads as
one of the workers, waits until every batch is final and commits. Each extra worker, on this machine or
another one sharing the state folder and the ledger (`BRAZE_MIGRATE_LEDGER_URL`), claims and sends batches
of that run until none is left, then exits. All of them share one rate budget through the ledger.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from braze_migrate.load.applier import apply_plan
from braze_migrate.plan.planner import plan_complete
from braze_migrate.run.credentials import resolve_credentials
from braze_migrate.run.engine import Engine
from braze_migrate.settings import ConfigError, LoadSettings
from connectors.state.ledger_base import LedgerBase
from connectors.states import BatchState, RunState

# Settings a worker takes from the run it joins, so every worker loads it the same way.
RUN_SETTINGS = ("rate_limit", "in_doubt", "max_attempts", "max_retry_seconds", "timeout_seconds",
                "retry_backoff_seconds")
POLL_SECONDS = 0.5
# A first load's planner records batches unit by unit; none for this long means it is gone.
PLANNING_STALL_S = 600.0


def join_run(settings: LoadSettings, wait_for_run: float = 0.0, on_wait: Callable[[], None] | None = None) -> dict:
    """Load batches of the unfinished run until none is claimable; this worker's totals (`run_id` None when
    there was no run to join). `on_wait` is called once if it has to wait for a run to be planned. Raises
    ClaimLost when another worker took a claim over."""
    engine = Engine(settings)
    try:
        found = _wait_for_run(engine, wait_for_run, on_wait)
        if found is None:
            return {"run_id": None, "batches": 0, "note": "no planned run to join"}
        settings = joined_settings(settings, found.settings)
        plan_dir = engine.run_dir(found.run_id) / "plan"
        if not plan_dir.is_dir():
            raise ConfigError(f"the plan of run {found.run_id} is not under {engine.state}: --state must be the "
                              "folder the run uses, on a filesystem every worker shares")
        endpoint, api_key = resolve_credentials(settings)
        stats = apply_plan(found.run_id, plan_dir, engine.ledger, settings, endpoint, api_key, wait=False,
                           planning=still_planning(engine.ledger, found.run_id, plan_dir))
    finally:
        engine.close()
    return {"run_id": found.run_id, "worker_id": stats.worker_id, "batches": stats.batches,
            BatchState.ACKNOWLEDGED.value: stats.acknowledged, BatchState.PENDING.value: stats.pending, "requests": stats.requests,
            "retries": stats.retries, "throttled": stats.throttled, "leases": stats.leases,
            "lease_ms": round(1000 * stats.lease_seconds / max(1, stats.leases), 3),
            "elapsed_s": round(stats.elapsed, 3), "stopped": stats.stopped}


def still_planning(ledger: LedgerBase, run_id: str, plan_dir: Path, *, stall_s: float = PLANNING_STALL_S,
                   clock: Callable[[], float] = time.monotonic) -> Callable[[], bool]:
    """Whether the run's own process may still record batches: a first load plans while it loads
    (braze_migrate/run/pipeline.py), so a helper that finds nothing to claim yet waits for the rest of the plan
    instead of leaving. Over once the plan is complete, the run is no longer loading, or no batch was recorded
    for `stall_s` (the planning process died: the helper leaves; the run's own command resumes it)."""
    seen = {"batches": -1, "at": clock()}

    def planning() -> bool:
        if plan_complete(plan_dir) or getattr(ledger.run(run_id), "status", None) != RunState.LOADING:
            return False
        batches = sum(ledger.status_counts(run_id).values())
        if batches != seen["batches"]:
            seen.update(batches=batches, at=clock())
        return clock() - seen["at"] < stall_s

    return planning


def joined_settings(own: LoadSettings, recorded: dict) -> LoadSettings:
    """This worker's settings with the run's rate limit and in-doubt policy (consistent across workers)."""
    return own.model_copy(update={k: recorded[k] for k in RUN_SETTINGS if k in recorded})


def _wait_for_run(engine: Engine, seconds: float, on_wait: Callable[[], None] | None):
    """The unfinished run once its own command loads it: not while `planning` (batches not recorded yet), nor
    `planned`/`held` (the guards have not passed it yet: a held plan must not be sent by a helper)."""
    deadline = time.monotonic() + seconds
    waiting = False
    while True:
        found = engine.ledger.unfinished_run()
        if found is not None and found.status in (RunState.LOADING, RunState.LOADED):
            return found
        if time.monotonic() >= deadline:
            return None
        if not waiting and on_wait is not None:
            on_wait()
        waiting = True
        time.sleep(POLL_SECONDS)
