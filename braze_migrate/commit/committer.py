"""Commit a run: advance the snapshot with exactly what Braze acknowledged, nothing more.

Derived only from the plan and the ledger, so committing twice gives the same snapshot (a crash between
the snapshot write and the ledger update is harmless). Users are committed partition by partition.
The snapshot is checked against the ledger's record first (a damaged one would lose acknowledged ids
silently) and every file written is journaled in that record (connectors/state/integrity.py).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from braze_migrate.plan.contract import extend_contract
from braze_migrate.plan.planner import object_files, plan_complete
from braze_migrate.plan.seen import commit_entries
from connectors.state import plan_digests
from connectors.state.integrity import journal_for, require_intact
from connectors.state.ledger import Ledger
from connectors.state.snapshot import SCHEMAS, Snapshot
from connectors.states import BatchState, HeldReason, Outcome
from transforms import ecommerce

# Datasets whose acknowledged ids the snapshot keeps (each sent once); eCommerce orders are events to Braze.
OCCURRENCE_IDS = ("purchases", "events", *ecommerce.DATASETS)
OUTCOME_COLUMNS = ["dataset", "array", "key", "external_id", "fingerprint", "data_points", "_file", "_row",
                   "batch_no", "index", "outcome", "reason", "in_doubt"]


def _ledger_frames(run_id: str, ledger: Ledger) -> tuple[pl.DataFrame, pl.DataFrame]:
    batches = pl.DataFrame(
        [(b["batch_no"], b["status"], bool(b["in_doubt"])) for b in ledger.batches(run_id)],
        schema={"batch_no": pl.Int64, "_status": pl.Utf8, "in_doubt": pl.Boolean}, orient="row",
    )
    outcomes = pl.DataFrame(
        ledger.outcomes(run_id),
        schema={"batch_no": pl.Int64, "array": pl.Utf8, "index": pl.Int64, "_outcome": pl.Utf8, "_reason": pl.Utf8},
        orient="row",
    )
    return batches, outcomes


def _outcome(objects: pl.DataFrame, batches: pl.DataFrame, outcomes: pl.DataFrame) -> pl.DataFrame:
    return (
        objects.join(batches, on="batch_no", how="left")
        .join(outcomes, on=["batch_no", "array", "index"], how="left")
        .with_columns(
            # A finished batch (acknowledged, or pending with its pending objects listed) acknowledged every
            # object it does not list; a batch never finished (planned, sending) acknowledged nothing.
            outcome=pl.when(pl.col("_outcome").is_not_null()).then(pl.col("_outcome"))
            .when(pl.col("_status").is_in([BatchState.ACKNOWLEDGED, BatchState.PENDING])).then(pl.lit(Outcome.ACKNOWLEDGED))
            .otherwise(pl.lit(Outcome.PENDING)),
            reason=pl.col("_reason"),
            in_doubt=pl.col("in_doubt").fill_null(False),
        )
        .select(OUTCOME_COLUMNS)
    )


def object_outcomes(run_id: str, plan_dir: Path, ledger: Ledger) -> pl.DataFrame:
    """Every planned object with its final outcome (`acknowledged` | `rejected` | `pending`), reason, in-doubt flag."""
    batches, outcomes = _ledger_frames(run_id, ledger)
    files = object_files(plan_dir)
    if not files:
        return pl.DataFrame(schema={**{c: pl.Utf8 for c in OUTCOME_COLUMNS}, "fingerprint": pl.UInt64,
                                    "data_points": pl.Int64, "_row": pl.Int64, "batch_no": pl.Int64,
                                    "index": pl.Int64, "in_doubt": pl.Boolean}).select(OUTCOME_COLUMNS)
    return pl.concat([_outcome(pl.read_parquet(f), batches, outcomes) for f in files])


def commit_run(run_id: str, plan_dir: Path, ledger: Ledger, snapshot: Snapshot, *, in_doubt_policy: str) -> pl.DataFrame:
    """Merge acknowledged values, ids and tokens into the snapshot; hold rejected and in-doubt objects.
    Raises StateDamaged, before writing anything, if the snapshot is not what the ledger recorded."""
    state = snapshot.root.parent
    require_intact(state, ledger)
    journal, snapshot.journal = snapshot.journal, journal_for(state, ledger, run_id)
    if plan_complete(plan_dir):  # what `repair` may replay of this run, proven by these digests
        plan_digests.record(ledger, run_id, plan_dir)
    try:
        return _commit(run_id, plan_dir, ledger, snapshot, in_doubt_policy)
    finally:
        snapshot.journal = journal


def replay_commit(run_id: str, plan_dir: Path, ledger: Ledger, snapshot: Snapshot, *, in_doubt_policy: str) -> pl.DataFrame:
    """The same commit into another snapshot, unchecked and unjournaled: `repair` replays every committed
    run, oldest first, into an empty folder to rebuild what they acknowledged."""
    return _commit(run_id, plan_dir, ledger, snapshot, in_doubt_policy)


def _commit(run_id: str, plan_dir: Path, ledger: Ledger, snapshot: Snapshot, in_doubt_policy: str) -> pl.DataFrame:
    batches, outcomes = _ledger_frames(run_id, ledger)
    parts, acked_users = [], {}
    for f in object_files(plan_dir):
        p = int(f.stem.split("-")[1])  # users units come first: a users unit's number is its partition
        outcome = _outcome(pl.read_parquet(f), batches, outcomes)
        _commit_users(p, outcome, plan_dir, snapshot)
        acked_users[p] = outcome.filter((pl.col("outcome") == Outcome.ACKNOWLEDGED) & (pl.col("dataset") == "users")
                                        ).select("external_id")
        parts.append(outcome)
    outcome = pl.concat(parts) if parts else object_outcomes(run_id, plan_dir, ledger)
    acked = outcome.filter(pl.col("outcome") == Outcome.ACKNOWLEDGED)
    commit_entries(plan_dir, snapshot, acked_users)

    for name in OCCURRENCE_IDS:
        new = acked.filter(pl.col("dataset") == name).select("key", "fingerprint")
        if new.height:
            old = snapshot.scan(name).collect()
            snapshot.replace(name, pl.concat([old.join(new, on="key", how="anti"), new]).sort("key"))

    tokens = acked.filter(pl.col("dataset") == "push_tokens").select("key", "external_id")
    if tokens.height:
        old = snapshot.scan("push_tokens").collect()
        snapshot.replace("push_tokens", pl.concat([old.join(tokens, on="key", how="anti"), tokens]).sort("key"))

    _commit_held(run_id, outcome, snapshot, in_doubt_policy)
    return outcome


def _commit_users(p: int, outcome: pl.DataFrame, plan_dir: Path, snapshot: Snapshot) -> None:
    """Partition p of the users snapshot takes the planned values of the users Braze acknowledged."""
    acked = outcome.filter((pl.col("outcome") == Outcome.ACKNOWLEDGED) & (pl.col("dataset") == "users")).select("external_id")
    users_next = plan_dir / "users_next" / f"part-{p:05d}.parquet"
    if not acked.height or not users_next.exists():
        return
    fresh = pl.read_parquet(users_next).join(acked, on="external_id", how="semi")
    kept = snapshot.scan_users_part(p).collect().join(acked, on="external_id", how="anti")
    snapshot.replace_users_part(p, pl.concat([kept, fresh], how="diagonal_relaxed").sort("external_id"))
    extend_contract(snapshot, fresh.lazy())


def _commit_held(run_id: str, outcome: pl.DataFrame, snapshot: Snapshot, in_doubt_policy: str) -> None:
    """Objects not to send again unchanged: Braze rejected them, or (under `skip`) they are in doubt."""
    rejected = outcome.filter(pl.col("outcome") == Outcome.REJECTED).select(
        "dataset", "key", "fingerprint", pl.lit(HeldReason.REJECTED).alias("status"), pl.col("reason").fill_null(Outcome.REJECTED.value),
    )
    doubtful = outcome.filter(
        (pl.col("outcome") == Outcome.PENDING) & pl.col("in_doubt") & pl.col("dataset").is_in(OCCURRENCE_IDS)
        & pl.lit(in_doubt_policy == "skip")
    ).select("dataset", "key", "fingerprint", pl.lit(HeldReason.IN_DOUBT).alias("status"),
             pl.lit("sent, then no definite answer (5xx, timeout or crash)").alias("reason"))
    newly_held = pl.concat([rejected, doubtful]).with_columns(run_id=pl.lit(run_id)).cast(SCHEMAS["held"])
    settled = outcome.filter(pl.col("outcome") != Outcome.PENDING).select("dataset", "key")
    held_before = snapshot.scan("held").collect()
    if newly_held.height or held_before.join(settled, on=["dataset", "key"], how="semi").height:
        held = pl.concat([held_before.join(settled, on=["dataset", "key"], how="anti")
                          .join(newly_held, on=["dataset", "key"], how="anti"), newly_held])
        snapshot.replace("held", held.sort(["dataset", "key"]))
