"""Packing objects into numbered `/users/track` request batches, bodies built in Polars.

Objects are ordered by user so one user's objects share a request where they fit (Braze applies attributes,
then events, then purchases inside one request). Batch numbers are deterministic for the same input.
"""

from __future__ import annotations

import numpy as np
import polars as pl

ARRAYS = ("attributes", "events", "purchases")
_ARRAY_RANK = {a: i for i, a in enumerate(ARRAYS)}
_DATASET_RANK = {"users": 0, "push_tokens": 1, "events": 2, "purchases": 3}


def order_objects(objects: pl.LazyFrame) -> pl.LazyFrame:
    """Objects in a stable order: by user (anonymous tokens last), then array, dataset and key."""
    return (
        objects.with_columns(
            _unit=pl.coalesce(pl.lit("u:") + pl.col("external_id"), pl.lit("~anon:") + pl.col("key")),
            _arank=pl.col("array").replace_strict(_ARRAY_RANK, return_dtype=pl.Int8),
            _drank=pl.col("dataset").replace_strict(_DATASET_RANK, return_dtype=pl.Int8),
        )
        .sort(["_unit", "_arank", "_drank", "key"])
    )


def assign_batches(ordered: pl.DataFrame, *, batch_size: int, mode: str = "combined") -> np.ndarray:
    """Batch number per object. Greedy: a user's objects go whole into the current batch if they fit,
    else into a new one; only a user with more objects than one request holds is split.

    `mode="combined"`: at most `batch_size` objects per request across the three arrays (Braze's default);
    `mode="per_array"`: at most `batch_size` per array (legacy contracts).
    """
    n = ordered.height
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero((ordered["_unit"] != ordered["_unit"].shift(1)).fill_null(True).to_numpy())
    unit_id = np.repeat(np.arange(len(starts)), np.diff(np.append(starts, n)))
    arank = ordered["_arank"].to_numpy().astype(np.int64)
    counts = np.zeros((len(starts), 3), dtype=np.int64)
    np.add.at(counts, (unit_id, arank), 1)
    limit = np.full(3, batch_size) if mode == "per_array" else None

    def fits(used: np.ndarray, c: np.ndarray) -> bool:
        return used.sum() + c.sum() <= batch_size if limit is None else bool(np.all(used + c <= limit))

    unit_batch = np.empty(len(starts), dtype=np.int64)
    spilled: dict[int, int] = {}  # object position -> batch, for users larger than one request
    batch, used, empty = 0, np.zeros(3, dtype=np.int64), np.zeros(3, dtype=np.int64)
    for u, c in enumerate(counts):
        if not fits(used, c) and fits(empty, c):
            batch, used = batch + 1, np.zeros(3, dtype=np.int64)
        if fits(used, c):
            unit_batch[u] = batch
            used = used + c
            continue
        unit_batch[u] = batch
        for pos in range(starts[u], starts[u] + int(c.sum())):
            one = np.eye(3, dtype=np.int64)[arank[pos]]
            if not fits(used, one):
                batch, used = batch + 1, np.zeros(3, dtype=np.int64)
            used = used + one
            spilled[pos] = batch
    per_object = unit_batch[unit_id]
    for pos, b in spilled.items():
        per_object[pos] = b
    return per_object


def pack(objects: pl.LazyFrame, *, batch_size: int, mode: str = "combined") -> tuple[pl.DataFrame, pl.DataFrame]:
    """(batches, placed objects): request bodies per batch and each object's batch and index as sent."""
    ordered = order_objects(objects).collect()
    ordered = ordered.with_columns(batch_no=pl.Series(assign_batches(ordered, batch_size=batch_size, mode=mode)))
    placed = ordered.with_columns(
        index=pl.int_range(pl.len(), dtype=pl.Int64).over(["batch_no", "array"])
    ).sort(["batch_no", "_arank", "index"])
    fragments = (
        placed.group_by(["batch_no", "_arank", "array"], maintain_order=True)
        .agg(pl.col("object").str.join(","), pl.len().alias("n"), pl.col("data_points").sum())
        .with_columns(fragment=pl.lit('"') + pl.col("array") + pl.lit('":[') + pl.col("object") + pl.lit("]"))
    )
    batches = (
        fragments.group_by("batch_no", maintain_order=True)
        .agg(
            body=pl.lit("{") + pl.col("fragment").str.join(",") + pl.lit("}"),
            **{f"n_{a}": pl.col("n").filter(pl.col("array") == a).sum() for a in ARRAYS},
            data_points=pl.col("data_points").sum(),
        )
        .sort("batch_no")
    )
    return batches, placed.drop(["_unit", "_arank", "_drank"])
