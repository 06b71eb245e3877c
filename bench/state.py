"""A state folder whose snapshot holds a whole export as acknowledged: what a backfill of the export leaves
once Braze acknowledged every batch, made by that very path without sending anything.

The export is planned by the product's planner into a fresh state, every planned batch is marked acknowledged
in the ledger, and the run is finished (committed) by the engine: the users snapshot, the type contract and
the memo of unchanged users (braze_migrate/plan/seen.py) are exactly a real backfill's. Written aside and renamed
into place, so a state folder that exists is complete.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

from braze_migrate.plan.planner import USERS_PER_PARTITION, build_plan
from braze_migrate.run.engine import Engine
from braze_migrate.run.pipeline import ledger_rows
from braze_migrate.settings import load_settings


def partitions_for(users: int, users_per_partition: int = USERS_PER_PARTITION) -> int:
    """The partition count a first plan of `users` users fixes (planner.build_plan's rule)."""
    return max(1, math.ceil(users / users_per_partition))


def write_acknowledged_state(export: Path, state: Path, *, users_per_partition: int = USERS_PER_PARTITION) -> int:
    """Replace `state` by one that backfilled `export` with every batch acknowledged; returns the partition count."""
    building = state.with_name(state.name + ".building")
    shutil.rmtree(building, ignore_errors=True)
    engine = Engine(load_settings(state=building, users_per_partition=users_per_partition))
    try:
        prepared = engine.prepare("backfill", str(export))
        # A first load is planned while it loads (braze_migrate/run/pipeline.py): plan and record it here.
        info = build_plan(str(export), engine.snapshot, prepared.plan_dir, batch_size=75, batch_mode="combined",
                          resend_in_doubt=False, users_per_partition=users_per_partition, resume=True,
                          on_unit=lambda _, batches: engine.ledger.add_batches(prepared.run_id, ledger_rows(batches)))
        engine.ledger.assume_acknowledged(prepared.run_id)
        engine.finish(prepared, started=0.0)
    finally:
        engine.close()
    shutil.rmtree(state, ignore_errors=True)
    building.rename(state)
    return partitions_for(info.stats["read"]["users"], users_per_partition)
