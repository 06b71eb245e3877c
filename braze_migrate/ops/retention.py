"""How long personal data stays in the state folder: request bodies of finished runs are removed.

A plan's request bodies (`batches/`, and the packer's `units/carry-*` files) hold the exact JSON sent:
emails, phones, names, push tokens. Once a run is committed nothing needs them, since resuming and
`repair` use `objects/` (keys, external ids and fingerprints) and `users_next/` (the values the snapshot
took, which the snapshot itself holds anyway). So they are removed `plan_retention_days` after the run
was committed (0, the default: at commit). Dry-run plans (`STATE/plans/<time>/`, payloads included) are
removed whole by a later load run once older than that, at least one day, so a dry run can be read first.
A run with batches still in doubt keeps its bodies until they are settled (`settle --check` reads them).
docs/state.md lists every file that holds personal data.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from connectors.state.ledger_base import LedgerBase
from connectors.states import RunState

DAY = 86_400.0
BODIES = ("batches",)
CARRIES = "units/carry-*.parquet"


def drop_bodies(plan_dir: Path) -> int:
    """Remove the request bodies of one plan; returns the files removed."""
    removed = 0
    for sub in BODIES:
        folder = plan_dir / sub
        if folder.is_dir():
            removed += sum(1 for p in folder.rglob("*") if p.is_file())
            shutil.rmtree(folder)
    for carry in plan_dir.glob(CARRIES):
        carry.unlink()
        removed += 1
    return removed


def prune(state: Path, ledger: LedgerBase, days: float, *, now: float | None = None) -> int:
    """Apply the retention to every committed run and dry-run plan of the state folder; returns files removed."""
    now = time.time() if now is None else now
    removed = 0
    for run in ledger.runs(limit=1_000_000):
        if (run.status == RunState.COMMITTED and _age(run, now) >= days * DAY
                and not _in_doubt(ledger, run.run_id)):
            removed += drop_bodies(state / "runs" / run.run_id / "plan")
    dry_runs = state / "plans"
    if dry_runs.is_dir():
        for plan in dry_runs.iterdir():
            if plan.is_dir() and now - plan.stat().st_mtime >= max(days, 1) * DAY:
                removed += sum(1 for p in plan.rglob("*") if p.is_file())
                shutil.rmtree(plan)
    return removed


def _in_doubt(ledger: LedgerBase, run_id: str) -> bool:
    """Batches still in doubt keep their bodies: `settle --check` reads what was sent (names, times)."""
    return ledger.has_in_doubt(run_id)


def _age(run, now: float) -> float:
    """Seconds since the run was last updated (committed), else since it was created."""
    return now - (run.updated_at or run.created_at)
