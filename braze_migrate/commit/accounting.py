"""The row accounting of a finished load: every row read ends in exactly one bucket, and every rejected row or
cell is listed in the rejects file with a reason the user can act on. Counts and ids only: no payloads, emails
or tokens."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from connectors.states import Outcome
from transforms import ecommerce, identity
from transforms.deltas import DELETED

BUCKETS = tuple(o.value for o in Outcome)  # acknowledged, rejected, unchanged, pending: every row counts in one
ACKED, REJECTED, UNCHANGED, PENDING = BUCKETS
REJECT_COLUMNS = ["dataset", "key", "column", "value", "reason", "file", "row"]


def write_rejects(plan_dir: Path, outcome: pl.DataFrame, path: Path) -> int:
    """One CSV: normalization rejects, rows held back as rejected, and objects Braze rejected (mapped back
    through the array as sent to their source file and row). Returns the number of entries."""
    own = pl.read_parquet(plan_dir / "rejects.parquet")
    kept = pl.read_parquet(plan_dir / "kept.parquet").filter(pl.col("bucket") == Outcome.REJECTED).select(
        "dataset", "key", pl.lit(None, pl.Utf8).alias("column"), pl.lit(None, pl.Utf8).alias("value"),
        "reason", pl.col("_file").alias("file"), pl.col("_row").alias("row"),
    )
    braze = outcome.filter(pl.col("outcome") == Outcome.REJECTED).select(
        "dataset", "key", pl.lit(None, pl.Utf8).alias("column"), pl.lit(None, pl.Utf8).alias("value"),
        (pl.lit("rejected by Braze: ") + pl.col("reason").fill_null("no reason given")).alias("reason"),
        pl.col("_file").alias("file"), pl.col("_row").alias("row"),
    )
    frames = [f.select(REJECT_COLUMNS).cast({"row": pl.Int64}) for f in (own, kept, braze)]
    allr = pl.concat(frames).sort(["dataset", "file", "row", "column"], nulls_last=False)
    # A user's key is shown as a person reads it: never an email or phone (file and row name the record).
    allr = allr.with_columns(key=pl.when(pl.col("dataset").is_in(["users", "user_deletes"]))
                             .then(identity.display(pl.col("key"))).otherwise(pl.col("key")))
    path.parent.mkdir(parents=True, exist_ok=True)
    allr.write_csv(path)
    return allr.height


def buckets(plan_dir: Path, outcome: pl.DataFrame) -> dict[str, dict[str, int]]:
    """Per dataset: read, acknowledged, rejected, unchanged, pending (adding up to read), plus rejected cells."""
    stats = json.loads((plan_dir / "stats.json").read_text())
    rejects = pl.read_parquet(plan_dir / "rejects.parquet")
    kept = pl.read_parquet(plan_dir / "kept.parquet")
    out: dict[str, dict[str, int]] = {}
    for name, read in stats["read"].items():
        own = rejects.filter(pl.col("dataset") == name)
        rows = own.filter(pl.col("column").is_null()).select("file", "row").unique().height
        cells = own.filter(pl.col("column").is_not_null()).height
        k = kept.filter(pl.col("dataset") == name)["bucket"].value_counts()
        kc = dict(zip(k["bucket"].to_list(), k["count"].to_list())) if k.height else {}
        o = outcome.filter(pl.col("dataset") == name)["outcome"].value_counts()
        oc = dict(zip(o["outcome"].to_list(), o["count"].to_list())) if o.height else {}
        out[name] = {
            "read": int(read),
            ACKED: int(oc.get(ACKED, 0)),
            REJECTED: int(rows + kc.get(REJECTED, 0) + oc.get(REJECTED, 0)),
            UNCHANGED: int(stats[UNCHANGED].get(name, 0) + kc.get(UNCHANGED, 0)),
            PENDING: int(kc.get(PENDING, 0) + oc.get(PENDING, 0)),
            "rejected_cells": int(cells),
        }
    return out


def suspicious_count(plan_dir: Path) -> int:
    """Rows and cells the plan flagged as suspicious (transforms/suspicious.py), held or sent."""
    path = plan_dir / "rejects.parquet"
    if not path.exists():
        return 0
    return pl.scan_parquet(path).filter(pl.col("reason").str.starts_with("suspicious:")).select(pl.len()).collect().item()


def erased_count(plan_dir: Path) -> int:
    """Rows rejected because their user was deleted from Braze (user_deletes): not a warehouse error to fix, they
    stay rejected until `braze-migrate undelete ID`."""
    path = plan_dir / "kept.parquet"
    if not path.exists():
        return 0
    return (pl.scan_parquet(path).filter((pl.col("bucket") == Outcome.REJECTED) & (pl.col("reason") == DELETED))
            .select(pl.len()).collect().item())


def in_doubt_batches(outcome: pl.DataFrame) -> list[dict]:
    """Batches that may have landed without our knowing: listed so a person can check them."""
    d = outcome.filter(pl.col("in_doubt"))
    if d.height == 0:
        return []
    occurrence = pl.col("dataset").is_in(["events", "purchases", *ecommerce.DATASETS])
    g = d.group_by("batch_no").agg(
        events=(pl.col("array") == "events").sum(),  # eCommerce orders are events to Braze
        purchases=(pl.col("dataset") == "purchases").sum(),
        resent=(occurrence & (pl.col("outcome") == Outcome.ACKNOWLEDGED)).sum(),
        held=(occurrence & (pl.col("outcome") == Outcome.PENDING)).sum(),
    ).sort("batch_no")
    actions = []
    for r in g.iter_rows(named=True):
        if r["resent"]:
            action = f"{r['resent']} events/purchases resent: duplicates possible"
        elif r["held"]:
            action = f"{r['held']} events/purchases held as pending (--in-doubt skip)"
        else:
            action = "attributes only: resent (idempotent)"
        actions.append({"batch_no": r["batch_no"], "events": int(r["events"]), "purchases": int(r["purchases"]),
                        "action": action})
    return actions
