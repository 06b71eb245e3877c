"""`braze-migrate repair`: rebuild a damaged snapshot from the ledger and the committed runs' plans.

A commit is derived only from a run's plan (`objects/`, `users_next/`) and the ledger's outcomes, so
replaying the commits of every committed run, oldest first, into an empty folder gives back the snapshot
they left: acknowledged purchase and event ids, push tokens, held objects, user values and the type
contract; users deleted on behalf of `user_deletes` are dropped again. Decisions of `settle` are in the
ledger, so they are replayed too. Nothing is sent and nothing acknowledged is forgotten. The damaged snapshot is kept beside it (`snapshot.damaged-<time>`,
it may hold personal data: remove it once the repair is checked). A run whose plan is gone cannot be
replayed: repair then refuses and names it, and only a restore from a backup can help.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from braze_migrate.commit.committer import replay_commit
from braze_migrate.ops.deletes import DATASET as DELETES
from braze_migrate.plan.planner import object_files
from connectors.state import plan_digests
from connectors.state.integrity import (
    UNFINISHED,
    SnapshotJournal,
    StateDamaged,
    check_state,
    digest_of,
    snapshot_files,
)
from connectors.state.ledger_base import LedgerBase, Run
from connectors.state.snapshot import SCHEMAS, Snapshot
from connectors.states import BatchState, HeldReason, RunState

DEFAULT_PARTITIONS_KEY = "partitions"


class RepairImpossible(StateDamaged):
    """What the snapshot needs is gone from the state folder too; the message names it and says to restore."""


@dataclass(frozen=True)
class RepairReport:
    """What `repair` did: runs replayed, the problems it found, rows per rebuilt file, where the old one is."""

    runs: list[str]
    problems: list[str]
    rows: dict[str, int]
    kept_aside: str | None


def repair_state(state: Path, ledger: LedgerBase) -> RepairReport:
    """Rebuild `state/snapshot` from the committed runs' plans and the ledger; record it as the new baseline."""
    state = Path(state)
    problems = check_state(state, ledger)
    _abandon_unsent_runs_without_plan(state, ledger)
    strangers = [p for p in problems if p.startswith("runs/")]
    if strangers:
        raise RepairImpossible(
            f"the ledger of {state} does not know {len(strangers)} planned run(s) ({strangers[0].split()[0]}): it was "
            "lost or replaced, so what Braze acknowledged for them is unknown; restore the ledger from a backup "
            "(held events then stay safe), or settle those runs' batches with `braze-migrate settle`"
        )
    runs = _committed(ledger)
    _require_plans(state, runs, ledger)
    building = state / ".repair"
    shutil.rmtree(building, ignore_errors=True)
    snapshot = Snapshot(building)
    partitions = _partitions(state, runs)
    if partitions is not None:
        (snapshot.root / "meta.json").write_text(json.dumps({DEFAULT_PARTITIONS_KEY: partitions}))
    for run in runs:
        policy = (run.settings or {}).get("in_doubt", "skip")
        replay_commit(run.run_id, state / "runs" / run.run_id / "plan", ledger, snapshot, in_doubt_policy=policy)
    _drop_deleted_users(snapshot, ledger, runs[-1].run_id if runs else "repair")
    kept_aside = _swap(state, snapshot.root)
    files = snapshot_files(state / "snapshot")
    digests = {name: digest_of(path) for name, path in files.items()}
    SnapshotJournal(ledger, run_id=runs[-1].run_id if runs else None).record_all(digests.items())
    shutil.rmtree(building, ignore_errors=True)
    return RepairReport([r.run_id for r in runs], problems, {n: d.rows for n, d in digests.items()}, kept_aside)


def _abandon_unsent_runs_without_plan(state: Path, ledger: LedgerBase) -> None:
    """An unfinished run whose plan was deleted: abandoned if it never sent a batch (the next run plans
    again, nothing is lost); otherwise what Braze holds of it is unknown and only a restore can tell."""
    for run in ledger.runs(limit=1_000_000):
        if run.status not in UNFINISHED or (state / "runs" / run.run_id / "plan").is_dir():
            continue
        sent = [b for b, status in ledger.batch_statuses(run.run_id).items() if status not in (BatchState.PLANNED, BatchState.CLAIMED)]
        if sent:
            raise RepairImpossible(
                f"run {run.run_id} sent {len(sent)} batch(es) before its plan (runs/{run.run_id}/plan) was deleted: "
                "which events and purchases Braze acknowledged is unknown; restore that folder from a backup"
            )
        ledger.set_run_status(run.run_id, RunState.ABANDONED)


def _drop_deleted_users(snapshot: Snapshot, ledger: LedgerBase, run_id: str) -> None:
    """Users deleted on behalf of `user_deletes` leave the rebuilt snapshot too, and stay kept out of later
    loads (held, as `deletes.keep_out` holds them) until `braze-migrate undelete` lifts their tombstone."""
    deleted = pl.DataFrame({"external_id": ledger.deleted_users(committed=True)}, schema={"external_id": pl.Utf8})
    if deleted.height == 0:
        return
    for part in sorted((snapshot.root / "users").glob("part-*.parquet")):
        p = int(part.stem.split("-")[1])
        snapshot.replace_users_part(p, snapshot.scan_users_part(p).collect().join(deleted, on="external_id",
                                                                                   how="anti"))
    if snapshot.path("push_tokens").exists():
        snapshot.replace("push_tokens", snapshot.scan("push_tokens").collect().join(deleted, on="external_id",
                                                                                    how="anti"))
    rows = pl.DataFrame({"dataset": DELETES, "key": deleted["external_id"], "fingerprint": None, "status": HeldReason.DELETED.value,
                         "reason": "deleted on behalf of user_deletes", "run_id": run_id}).cast(SCHEMAS["held"])
    held = snapshot.scan("held").collect().filter(pl.col("dataset") != DELETES)
    snapshot.replace("held", pl.concat([held, rows]).sort(["dataset", "key"]))


def _committed(ledger: LedgerBase) -> list[Run]:
    """Committed runs that planned something, oldest first: the order their commits were made in. A run that
    found its export unchanged since an earlier run (`unchanged_since`) planned, sent and acknowledged nothing:
    it has no plan to replay."""
    return sorted((r for r in ledger.runs(limit=1_000_000)
                   if r.status == RunState.COMMITTED and not (r.summary or {}).get("unchanged_since")),
                  key=lambda r: r.created_at)


def _require_plans(state: Path, runs: list[Run], ledger: LedgerBase) -> None:
    """Every file repair would replay is the one committed (its recorded digest), else nothing is rebuilt."""
    found = [(r.run_id, p) for r in runs for p in plan_digests.problems(ledger, r.run_id,
                                                                          state / "runs" / r.run_id / "plan")]
    if found:
        run_id, first = found[0]
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise RepairImpossible(
            f"{first}{more}: run {run_id}'s plan is not what was committed, so what it acknowledged cannot be "
            "rebuilt and nothing was changed; restore the state folder from a backup (or that run's plan folder)"
        )
    gone = [r.run_id for r in runs if not object_files(state / "runs" / r.run_id / "plan")
            and not (state / "runs" / r.run_id / "plan" / "stats.json").exists()]
    if gone:
        raise RepairImpossible(
            f"the plans of {len(gone)} committed run(s) are gone from {state}/runs (first: {gone[0]}): what they "
            "acknowledged cannot be rebuilt; restore the state folder from a backup"
        )


def _partitions(state: Path, runs: list[Run]) -> int | None:
    """The users partition count: the damaged meta.json if readable, else the first run's plan."""
    try:
        value = json.loads((state / "snapshot" / "meta.json").read_text())[DEFAULT_PARTITIONS_KEY]
        if isinstance(value, int) and value > 0:
            return value
    except (OSError, ValueError, KeyError, TypeError):
        pass
    for run in runs:
        try:
            return int(json.loads((state / "runs" / run.run_id / "plan" / "stats.json").read_text())["partitions"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return None


def _swap(state: Path, rebuilt: Path) -> str | None:
    """Move the damaged snapshot aside and the rebuilt one into place; returns where the old one went."""
    current = state / "snapshot"
    aside = None
    if current.exists():
        aside = state / f"snapshot.damaged-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}"
        current.rename(aside)
    rebuilt.rename(current)
    return str(aside) if aside else None
