"""Plan a run: read the source, normalize, diff against the snapshot, pack, and write the plan to disk.

The plan is the exact list of requests the run will send. It is written once, before anything is sent,
and a resumed run walks the same plan: a half-done run is never re-planned.

Memory stays bounded whatever the export size: users are split by a stable hash of `external_id` into
partitions (streamed to disk first), and each partition is normalized, diffed against its own snapshot
part and packed on its own. Events, purchases and tokens are diffed in one streaming pass and their
objects routed to the partition of their user, so one user's objects still share a request.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from connectors.sources import Dataset, open_source, reading
from connectors.state.snapshot import Snapshot, partition_of
from transforms import deltas, normalize
from transforms.csv_typing import infer_csv_types
from transforms.payloads import pack

REJECT_COLUMNS = ["dataset", "key", "column", "value", "reason", "file", "row"]
OCCURRENCES = ("push_tokens", "events", "purchases")
USERS_PER_PARTITION = 100_000
SLICE_ROWS = 1_000_000  # users streamed into partitions per slice: bounds the partitioned sink's buffers

OBJECT_SCHEMA = {
    "dataset": pl.Utf8, "array": pl.Utf8, "key": pl.Utf8, "external_id": pl.Utf8, "object": pl.Utf8,
    "fingerprint": pl.UInt64, "data_points": pl.Int64, "_file": pl.Utf8, "_row": pl.Int64,
}
KEPT_SCHEMA = {"dataset": pl.Utf8, "key": pl.Utf8, "bucket": pl.Utf8, "reason": pl.Utf8, "_file": pl.Utf8,
               "_row": pl.Int64}
REJECT_SCHEMA = {"dataset": pl.Utf8, "key": pl.Utf8, "column": pl.Utf8, "value": pl.Utf8, "reason": pl.Utf8,
                 "file": pl.Utf8, "row": pl.Int64}


@dataclass(frozen=True)
class PlanInfo:
    """Where a plan lives and its headline numbers."""

    directory: Path
    batches: int
    objects: int
    data_points: int
    stats: dict


def build_plan(source: str, snapshot: Snapshot, plan_dir: Path, *, batch_size: int, batch_mode: str,
               resend_in_doubt: bool, users_per_partition: int = USERS_PER_PARTITION,
               mapping: str | None = None) -> PlanInfo:
    """Write the plan into `plan_dir`: `batches/`, `objects/`, `users_next/` (one file per partition),
    `kept.parquet` (rows not sent and why, except unchanged ones, which are counted), `rejects.parquet`
    and `stats.json`."""
    for sub in ("batches", "objects", "users_next", "work"):
        shutil.rmtree(plan_dir / sub, ignore_errors=True)
        (plan_dir / sub).mkdir(parents=True, exist_ok=True)
    data = open_source(source, mapping=mapping, work_dir=plan_dir / "work" / "source")
    read = {name: _count_rows(ds) for name, ds in data.items()}
    n_parts = snapshot.partitions(default=max(1, math.ceil(read.get("users", 0) / users_per_partition)))
    held = snapshot.scan("held")
    if resend_in_doubt:
        held = held.filter(pl.col("status") != "in_doubt")

    rejects: list[pl.DataFrame] = []
    kept: list[pl.DataFrame] = []
    unchanged: dict[str, int] = {}
    full_dp, full_objects = 0, 0

    occ_dir = plan_dir / "work" / "occurrences"
    occ_parts: list[pl.LazyFrame] = []
    for name in OCCURRENCES:
        if name not in data:
            continue
        ds = data[name]
        norm = _normalize(ds)
        if name == "push_tokens":
            d = deltas.diff_push_tokens(norm.good, snapshot.scan("push_tokens"), held)
            cost = pl.LazyFrame({"dp": [0], "n": [0]})
        else:
            d = deltas.diff_occurrences(norm.good, snapshot.scan(name), held, dataset=name)
            cost = norm.good.select(pl.col("data_points").sum().alias("dp"), pl.len().alias("n"))
        target = occ_dir / name
        sink = (d.send.select(deltas.OBJECT_COLUMNS).cast(OBJECT_SCHEMA)
                .with_columns(_part=partition_of(pl.coalesce("external_id", "key"), n_parts))
                .sink_parquet(pl.PartitionBy(target, key="_part", include_key=False), mkdir=True, lazy=True))
        with reading(ds):
            # One pass over the source: the objects stream to disk by partition, and only the rows not sent
            # for a reason other than "unchanged" are kept in memory (unchanged ones are counted).
            _, rej, k, n_unchanged, c = pl.collect_all([
                sink,
                norm.rejects.select(REJECT_COLUMNS).cast(REJECT_SCHEMA),
                d.kept.filter(pl.col("bucket") != "unchanged").select(deltas.KEPT_COLUMNS).cast(KEPT_SCHEMA),
                d.kept.filter(pl.col("bucket") == "unchanged").select(pl.len()),
                cost,
            ])
        rejects.append(rej)
        kept.append(k)
        unchanged[name] = int(n_unchanged.item())
        full_dp, full_objects = full_dp + int(c["dp"][0] or 0), full_objects + int(c["n"][0])
        occ_parts.append(pl.scan_parquet(target / "**" / "*.parquet", hive_partitioning=True)
                         if any(target.rglob("*.parquet")) else None)

    users = data.get("users")
    if users is not None:
        users_dir = plan_dir / "work" / "users"
        with reading(users):
            csv_types = infer_csv_types(users.frame, exclude=users.typed) if users.format == "csv" else None
            part = partition_of(normalize.external_id_text(users.frame), n_parts)
            # A partitioned sink buffers every partition's rows until its end (about 4 GB for 10M users):
            # split the export into slices first, so the sink's memory follows the slice size.
            for i, offset in enumerate(range(0, max(read["users"], 1), SLICE_ROWS)):
                (users.frame.slice(offset, SLICE_ROWS).with_columns(_part=part)
                 .sink_parquet(pl.PartitionBy(users_dir / f"slice-{i:05d}", key="_part", include_key=False),
                               mkdir=True))
        unchanged["users"] = 0

    next_batch, total_objects, total_dp = 0, 0, 0
    for p in range(n_parts):
        sends = []
        if users is not None:
            part_files = sorted(users_dir.glob(f"slice-*/_part={p}/*.parquet"))
            if part_files:
                frame = pl.scan_parquet(part_files)
                norm = normalize.normalize_users(frame, csv_types, files=users.files)
                # Normalize once: the diff's several outputs would each run it again from a lazy plan.
                good, rej = pl.collect_all([norm.good, norm.rejects.select(REJECT_COLUMNS).cast(REJECT_SCHEMA)])
                d = deltas.diff_users(good.lazy(), snapshot.scan_users_part(p), held)
                send, k, n_unchanged, nxt, cost = pl.collect_all([
                    d.send.select(deltas.OBJECT_COLUMNS).cast(OBJECT_SCHEMA),
                    d.kept.filter(pl.col("bucket") != "unchanged").select(deltas.KEPT_COLUMNS).cast(KEPT_SCHEMA),
                    d.kept.filter(pl.col("bucket") == "unchanged").select(pl.len()),
                    d.next_rows,
                    deltas.full_resend_cost(good.lazy(), []),
                ])
                rejects.append(rej)
                unchanged["users"] += int(n_unchanged.item())
                kept.append(k)
                nxt.write_parquet(plan_dir / "users_next" / f"part-{p:05d}.parquet", compression="zstd")
                full_dp += int(cost["dp"][0] or 0)
                full_objects += int(cost["objects"][0] or 0)
                sends.append(send.lazy())
        for occ in occ_parts:
            if occ is not None:
                sends.append(occ.filter(pl.col("_part") == p).select(deltas.OBJECT_COLUMNS).cast(OBJECT_SCHEMA))
        if not sends:
            continue
        batches, placed = pack(pl.concat(sends), batch_size=batch_size, mode=batch_mode)
        if batches.height == 0:
            continue
        batches = batches.with_columns(pl.col("batch_no") + next_batch, partition=pl.lit(p, pl.Int32))
        placed = placed.with_columns(pl.col("batch_no") + next_batch)
        next_batch += batches.height
        total_objects += placed.height
        total_dp += int(batches["data_points"].sum() or 0)
        batches.write_parquet(plan_dir / "batches" / f"part-{p:05d}.parquet", compression="zstd")
        placed.drop("object").write_parquet(plan_dir / "objects" / f"part-{p:05d}.parquet", compression="zstd")

    shutil.rmtree(plan_dir / "work", ignore_errors=True)
    pl.concat(kept or [pl.DataFrame(schema=KEPT_SCHEMA)]).write_parquet(plan_dir / "kept.parquet")
    pl.concat(rejects or [pl.DataFrame(schema=REJECT_SCHEMA)]).write_parquet(plan_dir / "rejects.parquet")
    stats = {
        "source": source,
        "mapping": mapping,
        "read": read,
        "unchanged": unchanged,
        "partitions": n_parts,
        "full_resend": {"data_points": full_dp, "objects": full_objects},
        "batch_size": batch_size,
        "batch_mode": batch_mode,
    }
    (plan_dir / "stats.json").write_text(json.dumps(stats, indent=2))
    return PlanInfo(plan_dir, next_batch, total_objects, total_dp, stats)


def scan_batches(plan_dir: Path, columns: list[str] | None = None) -> pl.LazyFrame:
    """All planned batches (every partition), lazily."""
    files = sorted((plan_dir / "batches").glob("*.parquet"))
    if not files:
        return pl.LazyFrame(schema={"batch_no": pl.Int64, "body": pl.Utf8, "n_attributes": pl.UInt32,
                                    "n_events": pl.UInt32, "n_purchases": pl.UInt32, "data_points": pl.Int64,
                                    "partition": pl.Int32}).select(columns or pl.all())
    lf = pl.scan_parquet(files)
    return lf.select(columns) if columns else lf


def object_files(plan_dir: Path) -> list[Path]:
    return sorted((plan_dir / "objects").glob("*.parquet"))


def _normalize(ds: Dataset) -> normalize.Normalized:
    fn = {
        "purchases": normalize.normalize_purchases,
        "events": normalize.normalize_events,
        "push_tokens": normalize.normalize_push_tokens,
    }[ds.name]
    return fn(ds.frame, files=ds.files)


def _count_rows(ds: Dataset) -> int:
    with reading(ds):
        return int(ds.frame.select(pl.len()).collect().item())


def normalized_datasets(source: str, *, work_dir: Path, mapping: str | None = None
                        ) -> dict[str, tuple[pl.LazyFrame, normalize.Normalized]]:
    """Scan and normalize every dataset of a source whole: (raw frame, normalized), lazy. For readers that
    look at a sample (verify); planning itself goes partition by partition."""
    out = {}
    for name, ds in open_source(source, mapping=mapping, work_dir=work_dir).items():
        if name == "users":
            csv_types = infer_csv_types(ds.frame, exclude=ds.typed) if ds.format == "csv" else None
            out[name] = (ds.frame, normalize.normalize_users(ds.frame, csv_types, files=ds.files))
        else:
            out[name] = (ds.frame, _normalize(ds))
    return out
