"""Plan a run: read the source, normalize, diff against the snapshot, pack, and write the plan to disk.

The plan is the exact list of requests the run will send. It is written once, before anything is sent,
and a resumed run walks the same plan: a half-done run is never re-planned.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from connectors.sources import scan_folder
from connectors.state.snapshot import Snapshot
from transforms import deltas, normalize
from transforms.csv_typing import infer_csv_types
from transforms.payloads import pack

DATASETS = ("users", "push_tokens", "events", "purchases")
REJECT_COLUMNS = ["dataset", "key", "column", "value", "reason", "file", "row"]


@dataclass(frozen=True)
class PlanInfo:
    """Where a plan lives and its headline numbers."""

    directory: Path
    batches: int
    objects: int
    data_points: int
    stats: dict


def normalized_datasets(source: str) -> dict[str, tuple[pl.LazyFrame, normalize.Normalized]]:
    """Scan and normalize every dataset the source holds: (raw frame, normalized), lazy."""
    out = {}
    for name, ds in scan_folder(source).items():
        frame, files = ds.frame, ds.files
        if name == "users":
            csv_types = infer_csv_types(frame) if ds.format == "csv" else None
            out[name] = (frame, normalize.normalize_users(frame, csv_types, files=files))
        else:
            fn = {
                "purchases": normalize.normalize_purchases,
                "events": normalize.normalize_events,
                "push_tokens": normalize.normalize_push_tokens,
            }[name]
            out[name] = (frame, fn(frame, files=files))
    return out


def build_plan(source: str, snapshot: Snapshot, plan_dir: Path, *, batch_size: int, batch_mode: str,
               resend_in_doubt: bool) -> PlanInfo:
    """Write `batches.parquet`, `objects.parquet`, `users_next.parquet`, `kept.parquet`, `rejects.parquet`
    and `stats.json` into `plan_dir`."""
    plan_dir.mkdir(parents=True, exist_ok=True)
    scanned = normalized_datasets(source)
    data = {n: norm for n, (_, norm) in scanned.items()}
    held = snapshot.scan("held")
    if resend_in_doubt:
        held = held.filter(pl.col("status") != "in_doubt")

    sends, kepts, rejects, read = [], [], [], {}
    next_rows = None
    for name in DATASETS:
        if name not in data:
            continue
        good, rej = data[name].good, data[name].rejects
        if name == "users":
            d = deltas.diff_users(good, snapshot.scan("users"), held)
            next_rows = d.next_rows
        elif name == "push_tokens":
            d = deltas.diff_push_tokens(good, snapshot.scan("push_tokens"), held)
        else:
            d = deltas.diff_occurrences(good, snapshot.scan(name), held, dataset=name)
        sends.append(d.send)
        kepts.append(d.kept)
        rejects.append(rej.select(REJECT_COLUMNS))

    full = deltas.full_resend_cost(
        data["users"].good if "users" in data else None,
        [data[n].good for n in ("events", "purchases") if n in data],
    )
    empty_objects = pl.LazyFrame(schema={c: t for c, t in _OBJECT_SCHEMA.items()})
    objects = pl.concat([s.select(deltas.OBJECT_COLUMNS).cast(_OBJECT_SCHEMA) for s in sends] or [empty_objects])
    batches, placed = pack(objects, batch_size=batch_size, mode=batch_mode)

    kept = pl.concat([k.select(deltas.KEPT_COLUMNS).cast(_KEPT_SCHEMA) for k in kepts]).collect() if kepts \
        else pl.DataFrame(schema=_KEPT_SCHEMA)
    rej_df = pl.concat([r.cast(_REJECT_SCHEMA) for r in rejects]).collect() if rejects \
        else pl.DataFrame(schema=_REJECT_SCHEMA)
    for name, (raw, _) in scanned.items():
        read[name] = _count_rows(raw)

    full_row = full.collect().row(0, named=True)
    stats = {
        "source": source,
        "read": read,
        "full_resend": {"data_points": int(full_row["dp"] or 0), "objects": int(full_row["objects"] or 0)},
        "batch_size": batch_size,
        "batch_mode": batch_mode,
    }
    batches.write_parquet(plan_dir / "batches.parquet", compression="zstd")
    placed.drop("object").write_parquet(plan_dir / "objects.parquet", compression="zstd")
    kept.write_parquet(plan_dir / "kept.parquet", compression="zstd")
    rej_df.write_parquet(plan_dir / "rejects.parquet", compression="zstd")
    if next_rows is not None:
        next_rows.collect().write_parquet(plan_dir / "users_next.parquet", compression="zstd")
    (plan_dir / "stats.json").write_text(json.dumps(stats, indent=2))
    return PlanInfo(plan_dir, batches.height, placed.height, int(batches["data_points"].sum() or 0), stats)


def _count_rows(frame: pl.LazyFrame) -> int:
    return int(frame.select(pl.len()).collect().item())


_OBJECT_SCHEMA = {
    "dataset": pl.Utf8, "array": pl.Utf8, "key": pl.Utf8, "external_id": pl.Utf8, "object": pl.Utf8,
    "fingerprint": pl.UInt64, "data_points": pl.Int64, "_file": pl.Utf8, "_row": pl.Int64,
}
_KEPT_SCHEMA = {"dataset": pl.Utf8, "key": pl.Utf8, "bucket": pl.Utf8, "reason": pl.Utf8, "_file": pl.Utf8,
                "_row": pl.Int64}
_REJECT_SCHEMA = {"dataset": pl.Utf8, "key": pl.Utf8, "column": pl.Utf8, "value": pl.Utf8, "reason": pl.Utf8,
                  "file": pl.Utf8, "row": pl.Int64}
