"""Packing objects into numbered `/users/track` request batches, bodies built in Polars.

Requests are packed full: objects are laid end to end in a stable order (attributes, then events, then
purchases; by dataset and key inside each) and cut every `batch_size` objects, so a plan needs
ceil(objects / batch_size) requests whatever the shape of the export. A user's objects are not kept
together: Braze creates the profile from whichever object names it first, and the order across requests
does not change the resulting profile (docs/design.md, "Packing"). Planning goes unit by unit (a
partition of users, events, purchases or tokens); the last, unfilled batch of one unit is carried into the
next (`Packed.tail`), so only the plan's very last request may be part-empty.

Batch numbers and positions are pure functions of the ordered objects and the carried tail: the same
input always gives the same plan. No Python loop runs per object or per user.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

ARRAYS = ("attributes", "events", "purchases")
_ARRAY_RANK = {a: i for i, a in enumerate(ARRAYS)}
_DATASET_RANK = {"users": 0, "push_tokens": 1, "events": 2, "purchases": 3, "orders": 4, "order_refunds": 5,
                 "order_cancellations": 6}  # eCommerce orders (transforms/ecommerce.py) are events to Braze
MODES = ("combined", "per_array")

TAIL_SCHEMA = {
    "dataset": pl.Utf8, "array": pl.Utf8, "key": pl.Utf8, "external_id": pl.Utf8, "object": pl.Utf8,
    "fingerprint": pl.UInt64, "data_points": pl.Int64, "_file": pl.Utf8, "_row": pl.Int64,
    "batch_no": pl.Int64, "index": pl.Int64,
}
BATCH_SCHEMA = {"batch_no": pl.Int64, "body": pl.Utf8, "n_attributes": pl.UInt32, "n_events": pl.UInt32,
                "n_purchases": pl.UInt32, "data_points": pl.Int64}


@dataclass(frozen=True)
class Packed:
    """One unit packed: the batches it closed (`batches`, bodies ready to send), where each of its objects
    went (`placed`: batch_no and index in its array, without the object text), and the open last batch
    (`tail`, with object text) to carry into the next unit; empty once packing is final."""

    batches: pl.DataFrame
    placed: pl.DataFrame
    tail: pl.DataFrame


def empty_tail() -> pl.DataFrame:
    return pl.DataFrame(schema=TAIL_SCHEMA)


def order_objects(objects: pl.LazyFrame) -> pl.LazyFrame:
    """Objects in a stable order: attributes, then events, then purchases; by dataset and key inside."""
    return (
        objects.with_columns(
            _arank=pl.col("array").replace_strict(_ARRAY_RANK, return_dtype=pl.Int8),
            _drank=pl.col("dataset").replace_strict(_DATASET_RANK, return_dtype=pl.Int8),
        )
        .sort(["_arank", "_drank", "key"], maintain_order=True)
        .drop("_drank")
    )


def pack_unit(objects: pl.LazyFrame, *, batch_size: int, mode: str = "combined",
              tail: pl.DataFrame | None = None, next_batch: int = 0, final: bool = True) -> Packed:
    """Pack one unit's objects after the carried `tail` (the open batch of the previous unit).

    `next_batch` is the number the next new batch gets when there is no tail. `mode="combined"`: at most
    `batch_size` objects per request across the three arrays (Braze's default); `mode="per_array"`: at
    most `batch_size` per array (legacy contracts). With `final`, the open batch is closed too.
    """
    if mode not in MODES:
        raise ValueError(f"batch mode {mode!r}: choose one of {', '.join(MODES)}")
    tail = empty_tail() if tail is None else tail
    first = int(tail["batch_no"][0]) if tail.height else next_batch
    # Objects already in the open batch, counted as in the batch numbering: all of them, or per array.
    counts = tail.group_by("array").len() if tail.height else pl.DataFrame(schema={"array": pl.Utf8, "len": pl.UInt32})
    carried = dict(counts.iter_rows())
    ordered = order_objects(objects)
    if mode == "combined":
        slot = pl.int_range(pl.len(), dtype=pl.Int64) + tail.height
    else:
        offset = pl.col("array").replace_strict(carried, default=0, return_dtype=pl.Int64)
        slot = pl.int_range(pl.len(), dtype=pl.Int64).over("array") + offset
    new = ordered.with_columns(batch_no=first + slot // batch_size).collect(engine="in-memory")
    rows = pl.concat([
        tail.with_columns(_arank=pl.col("array").replace_strict(_ARRAY_RANK, return_dtype=pl.Int8), _new=pl.lit(False)),
        new.with_columns(index=pl.lit(0, pl.Int64), _new=pl.lit(True)).select(*TAIL_SCHEMA, "_arank", "_new"),
    ], how="vertical")
    # Position in its array as sent: the tail's objects keep theirs (they come first in their batch).
    rows = rows.with_columns(index=pl.int_range(pl.len(), dtype=pl.Int64).over(["batch_no", "array"]))
    last = rows["batch_no"].max() if rows.height else None
    closing = rows if final or last is None else rows.filter(pl.col("batch_no") < last)
    open_rows = rows.head(0) if final or last is None else rows.filter(pl.col("batch_no") == last)
    return Packed(
        batches=_bodies(closing),
        placed=rows.filter("_new").drop(["object", "_arank", "_new"]),
        tail=open_rows.select(list(TAIL_SCHEMA)),
    )


def _bodies(rows: pl.DataFrame) -> pl.DataFrame:
    """One request body per batch: `{"attributes":[...],"events":[...],"purchases":[...]}` in index order."""
    if rows.height == 0:
        return pl.DataFrame(schema=BATCH_SCHEMA)
    fragments = (
        rows.sort(["batch_no", "_arank", "index"])
        .group_by(["batch_no", "_arank", "array"], maintain_order=True)
        .agg(pl.col("object").str.join(","), pl.len().alias("n"), pl.col("data_points").sum())
        .with_columns(fragment=pl.lit('"') + pl.col("array") + pl.lit('":[') + pl.col("object") + pl.lit("]"))
    )
    return (
        fragments.group_by("batch_no", maintain_order=True)
        .agg(
            body=pl.lit("{") + pl.col("fragment").str.join(",") + pl.lit("}"),
            **{f"n_{a}": pl.col("n").filter(pl.col("array") == a).sum().cast(pl.UInt32) for a in ARRAYS},
            data_points=pl.col("data_points").sum().cast(pl.Int64),
        )
        .sort("batch_no")
        .select(list(BATCH_SCHEMA))
    )


def pack(objects: pl.LazyFrame, *, batch_size: int, mode: str = "combined") -> tuple[pl.DataFrame, pl.DataFrame]:
    """(batches, placed objects) of one set of objects packed on its own, from batch 0."""
    packed = pack_unit(objects, batch_size=batch_size, mode=mode, final=True)
    return packed.batches, packed.placed
