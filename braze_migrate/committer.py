"""Commit a run: advance the snapshot with exactly what Braze acknowledged, nothing more.

Derived only from the plan and the ledger, so committing twice gives the same snapshot (a crash between
the snapshot write and the ledger update is harmless).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from connectors.state.ledger import Ledger
from connectors.state.snapshot import SCHEMAS, Snapshot


def object_outcomes(run_id: str, plan_dir: Path, ledger: Ledger) -> pl.DataFrame:
    """Every planned object with its final outcome (`acknowledged` | `rejected` | `pending`), reason, in-doubt flag."""
    objects = pl.read_parquet(plan_dir / "objects.parquet")
    batches = pl.DataFrame(
        [(b["batch_no"], b["status"], bool(b["in_doubt"])) for b in ledger.batches(run_id)],
        schema={"batch_no": pl.Int64, "_status": pl.Utf8, "in_doubt": pl.Boolean}, orient="row",
    )
    outcomes = pl.DataFrame(
        ledger.outcomes(run_id),
        schema={"batch_no": pl.Int64, "array": pl.Utf8, "index": pl.Int64, "_outcome": pl.Utf8, "_reason": pl.Utf8},
        orient="row",
    )
    return (
        objects.join(batches, on="batch_no", how="left")
        .join(outcomes, on=["batch_no", "array", "index"], how="left")
        .with_columns(
            # A finished batch (acknowledged, or pending with its pending objects listed) acknowledged every
            # object it does not list; a batch never finished (planned, sending) acknowledged nothing.
            outcome=pl.when(pl.col("_outcome").is_not_null()).then(pl.col("_outcome"))
            .when(pl.col("_status").is_in(["acknowledged", "pending"])).then(pl.lit("acknowledged"))
            .otherwise(pl.lit("pending")),
            reason=pl.col("_reason"),
            in_doubt=pl.col("in_doubt").fill_null(False),
        )
        .drop(["_status", "_outcome", "_reason"])
    )


def commit_run(run_id: str, plan_dir: Path, ledger: Ledger, snapshot: Snapshot, *, in_doubt_policy: str) -> pl.DataFrame:
    """Merge acknowledged values, ids and tokens into the snapshot; hold rejected and in-doubt objects."""
    outcome = object_outcomes(run_id, plan_dir, ledger)
    acked = outcome.filter(pl.col("outcome") == "acknowledged")

    users_next = plan_dir / "users_next.parquet"
    acked_users = acked.filter(pl.col("dataset") == "users").select("external_id")
    if users_next.exists() and acked_users.height:
        fresh = pl.read_parquet(users_next).join(acked_users, on="external_id", how="semi")
        kept = snapshot.scan("users").collect().join(acked_users, on="external_id", how="anti")
        snapshot.replace("users", pl.concat([kept, fresh], how="diagonal_relaxed").sort("external_id"))

    for name in ("purchases", "events"):
        new = acked.filter(pl.col("dataset") == name).select("key", "fingerprint")
        if new.height:
            old = snapshot.scan(name).collect()
            merged = pl.concat([old.join(new, on="key", how="anti"), new]).sort("key")
            snapshot.replace(name, merged)

    tokens = acked.filter(pl.col("dataset") == "push_tokens").select("key", "external_id")
    if tokens.height:
        old = snapshot.scan("push_tokens").collect()
        snapshot.replace("push_tokens", pl.concat([old.join(tokens, on="key", how="anti"), tokens]).sort("key"))

    rejected = outcome.filter(pl.col("outcome") == "rejected").select(
        "dataset", "key", "fingerprint", pl.lit("rejected").alias("status"), pl.col("reason").fill_null("rejected"),
    )
    doubtful = outcome.filter(
        (pl.col("outcome") == "pending") & pl.col("in_doubt") & pl.col("dataset").is_in(["events", "purchases"])
        & pl.lit(in_doubt_policy == "skip")
    ).select("dataset", "key", "fingerprint", pl.lit("in_doubt").alias("status"),
             pl.lit("sent, then no definite answer (5xx, timeout or crash)").alias("reason"))
    newly_held = pl.concat([rejected, doubtful]).with_columns(run_id=pl.lit(run_id)).cast(SCHEMAS["held"])
    settled = outcome.filter(pl.col("outcome") != "pending").select("dataset", "key")
    held_before = snapshot.scan("held").collect()
    if newly_held.height or held_before.join(settled, on=["dataset", "key"], how="semi").height:
        held = pl.concat([held_before.join(settled, on=["dataset", "key"], how="anti")
                          .join(newly_held, on=["dataset", "key"], how="anti"), newly_held])
        snapshot.replace("held", held.sort(["dataset", "key"]))
    return outcome
