"""Benchmark inputs: a user export and "tonight's" export with ~5% of users changed, both deterministic.

Users come from the sample generator (`data/samples/generate.py`, 21 attributes of every type). Large
exports are written as shards of at most `SHARD` users (their own seed, external_ids prefixed by the
shard number) so generating 10M users never holds more than one shard in memory. Tonight's export is the
same users with `CHANGED` of them given new values (tier, lifetime value, order count; a fifth of those
also lose their phone), `NEW` new users and `ABSENT` users left out. Folders are reused when present.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
SHARD = 1_000_000
CHANGED = 0.05
NEW = 0.005
ABSENT = 0.005
SEED = 7
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Inputs:
    """Yesterday's export (what the snapshot holds) and tonight's, as export folders."""

    users: int
    day1: Path
    tonight: Path


@cache
def generator():
    """The sample generator module (a script, not a package)."""
    spec = importlib.util.spec_from_file_location("braze_samples_generate", ROOT / "data" / "samples" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ensure_inputs(users: int, root: Path = OUT / "data") -> Inputs:
    """Write (or reuse) the day-1 and tonight exports of `users` users under `root`/<users>/."""
    folder = root / str(users)
    inputs = Inputs(users, folder / "day1", folder / "tonight")
    stamp = folder / "inputs.json"
    wanted = {"users": users, "seed": SEED, "changed": CHANGED, "new": NEW, "absent": ABSENT,
              "version": FORMAT_VERSION}
    if stamp.exists() and json.loads(stamp.read_text()) == wanted:
        return inputs
    shutil.rmtree(folder, ignore_errors=True)
    for path in (inputs.day1 / "users", inputs.tonight / "users"):
        path.mkdir(parents=True)
    for shard, start in enumerate(range(0, users, SHARD)):
        day1 = shard_users(shard, min(SHARD, users - start), many=users > SHARD)
        day1.write_parquet(inputs.day1 / "users" / f"part-{shard:05d}.parquet")
        tonight(day1, shard).write_parquet(inputs.tonight / "users" / f"part-{shard:05d}.parquet")
        del day1
    stamp.write_text(json.dumps(wanted))
    return inputs


def shard_users(shard: int, n: int, *, many: bool) -> pl.DataFrame:
    """One shard of yesterday's users; shard-prefixed ids when the export has several shards."""
    gen = generator()
    df = gen.users(gen.Rng(SEED + shard), n, 1)
    if many:
        df = df.with_columns(external_id=pl.lit(f"{shard:03d}-") + pl.col("external_id"))
    return df


def tonight(day1: pl.DataFrame, shard: int) -> pl.DataFrame:
    """Tonight's users: `CHANGED` of them with new values, `NEW` added, `ABSENT` left out."""
    gen = generator()
    rng = gen.Rng(SEED * 1000 + shard)
    i = pl.int_range(pl.len(), dtype=pl.Int64)
    draw = rng.uniform("tonight", i)
    changed = draw < CHANGED
    emptied = draw < CHANGED / 5
    absent = (draw >= CHANGED) & (draw < CHANGED + ABSENT)
    later = pl.col("updated_at") + pl.duration(days=1)
    edited = day1.with_columns(
        updated_at=pl.when(changed).then(later).otherwise("updated_at"),
        loyalty_tier=pl.when(changed).then(pl.lit("diamond")).otherwise("loyalty_tier"),
        lifetime_value=pl.when(changed).then(pl.col("lifetime_value") + 25.5).otherwise("lifetime_value"),
        orders_count=pl.when(changed).then(pl.col("orders_count") + 1).otherwise("orders_count"),
        phone=pl.when(emptied).then(None).otherwise("phone"),
    ).filter(~absent)
    new = max(1, round(day1.height * NEW))
    fresh = day1.head(new).with_columns(external_id=pl.lit("new-") + pl.col("external_id"))
    return pl.concat([edited, fresh])
