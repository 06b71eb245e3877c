"""A state folder whose snapshot holds a whole export as acknowledged, written without loading anything.

It is what a backfill of the export leaves once Braze acknowledged every batch: each users partition is
normalized and diffed against an empty snapshot with the product's own functions, and the rows the commit
would store (`Delta.next_rows`) are written as `snapshot/users/part-NNNNN.parquet` with `snapshot/meta.json`.
tests/test_bench_harness.py checks it against a real backfill + commit.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import polars as pl

from braze_migrate.planner import USERS_PER_PARTITION
from connectors.sources import scan_folder
from connectors.state.snapshot import SCHEMAS, Snapshot, partition_of
from transforms import deltas, normalize


def partitions_for(users: int, users_per_partition: int = USERS_PER_PARTITION) -> int:
    """The partition count a first plan of `users` users fixes (planner.build_plan's rule)."""
    return max(1, math.ceil(users / users_per_partition))


def write_acknowledged_state(export: Path, state: Path, *, users_per_partition: int = USERS_PER_PARTITION) -> int:
    """Replace `state` by one whose users snapshot is `export` fully acknowledged; returns the partition count.

    Written aside and renamed into place, so a state folder that exists is complete."""
    building = state.with_name(state.name + ".building")
    shutil.rmtree(building, ignore_errors=True)
    snapshot = Snapshot(building)
    users = scan_folder(export)["users"]
    total = users.frame.select(pl.len()).collect().item()
    parts = snapshot.partitions(default=partitions_for(total, users_per_partition))
    work = building / "work"
    (users.frame.with_columns(_part=partition_of(normalize.external_id_text(users.frame), parts))
     .sink_parquet(pl.PartitionBy(work, key="_part", include_key=False), mkdir=True))
    empty = pl.LazyFrame(schema=SCHEMAS["users"])
    held = pl.LazyFrame(schema=SCHEMAS["held"])
    for p in range(parts):
        files = list((work / f"_part={p}").glob("*.parquet"))
        if not files:
            continue
        good = normalize.normalize_users(pl.scan_parquet(files), files=users.files).good
        rows = deltas.diff_users(good, empty, held).next_rows.collect()
        snapshot.replace_users_part(p, rows.sort("external_id"))
    shutil.rmtree(work)
    shutil.rmtree(state, ignore_errors=True)
    building.rename(state)
    return parts
