"""User deletes: the export's `user_deletes` dataset sent to Braze's `/users/delete`, planned, guarded,
ledgered and committed like the track load.

- plan: the ids of `user_deletes` (external_id, optional reason), normalized like users' ids, each once, minus
  those an earlier run already deleted (unless the user was loaded again since); packed 50 per request into
  `deletes.parquet` in the run's plan folder and recorded in the ledger as `planned` batches.
- guard: never more than `delete_max_count` ids, nor more than `delete_max_share` of the acknowledged users,
  in one run unless `allow_mass_delete` is set: a held plan sends nothing and says how to accept it.
- apply: write-ahead like track batches (`sending` is committed before the request leaves, the outcome after
  Braze answered); an acknowledged batch is never sent again. Braze's delete is idempotent, so a batch left
  `sending` by a killed process is simply sent again.
- commit: the deleted users' rows leave the snapshot (users and their push tokens), through the journaled
  snapshot writer, and the ids are remembered as deleted.

Absence from an export never deletes: only ids listed in `user_deletes` are deleted.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import polars as pl

from connectors.braze.deletes import MAX_IDS, DeleteClient, DeleteResult
from connectors.errors import SourceError
from connectors.sources import open_source, reading
from connectors.state.integrity import journal_for
from connectors.state.snapshot import SCHEMAS, Snapshot
from connectors.states import FINAL_REQUESTS, HeldReason, RequestState
from transforms import identity
from transforms.normalize import MAX_EXTERNAL_ID_BYTES, external_id_text

PLAN_FILE = "deletes.parquet"
LISTED_FILE = "deletes_listed.parquet"  # every id tonight's user_deletes lists (sent or deleted before)
DATASET = "user_deletes"
NOT_TEXT = "external_id is missing or not text"
TOO_LONG = f"external_id longer than {MAX_EXTERNAL_ID_BYTES} bytes; Braze cannot hold it"


@dataclass(frozen=True)
class DeleteSettings:
    """`rate_limit` of `/users/delete` (Braze: 20,000/min shared with identify, alias and merge); the guard's
    `max_count` and `max_share` of acknowledged users (judged from `min_users` acknowledged users on, like
    the other guards); `allow_mass` lifts the guard for one run."""

    rate_limit: str = "20000/60s"
    max_count: int = 1000
    max_share: float = 0.1
    min_users: int = 100  # the share is not judged below this many acknowledged users (the count still is)
    allow_mass: bool = False
    max_attempts: int = 6
    max_retry_seconds: float = 300.0
    timeout_seconds: float = 30.0

    @classmethod
    def of(cls, settings) -> DeleteSettings:
        """From the run's LoadSettings (fields it does not have keep their defaults)."""
        names = {"rate_limit": "delete_rate_limit", "max_count": "delete_max_count",
                 "max_share": "delete_max_share", "min_users": "guard_min_users", "allow_mass": "allow_mass_delete", "max_attempts": "max_attempts",
                 "max_retry_seconds": "max_retry_seconds", "timeout_seconds": "timeout_seconds"}
        return cls(**{k: getattr(settings, v) for k, v in names.items() if getattr(settings, v, None) is not None})


@dataclass
class DeleteReport:
    """What the deletes of one run did; `deleted_ids` are listed in the run report (ids, never other data)."""

    requested: int = 0
    already_deleted: int = 0
    rejected_rows: list[dict] = field(default_factory=list)
    held: bool = False
    message: str | None = None
    batches: int = 0
    acknowledged_batches: int = 0
    pending_batches: int = 0
    requests: int = 0
    deleted_ids: list[str] = field(default_factory=list)
    pending_ids: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def read_deletes(source: str, mapping: str | None, work_dir: Path) -> tuple[pl.DataFrame, list[dict]] | None:
    """(ids to delete, rejected rows) from the source's `user_deletes`, or None when it has none.
    Ids are normalized like users' external_ids; each id once (first row kept)."""
    data = open_source(source, mapping=mapping, work_dir=work_dir)
    ds = data.get(DATASET)
    if ds is None:
        return None
    if not any(c in ds.frame.collect_schema() for c in identity.COLUMNS):
        raise SourceError(f"{DATASET}: no identifier column in {', '.join(ds.files[:3])}: add external_id (or "
                          "alias_name and alias_label, email, phone) to the export or map a warehouse column onto it")
    with reading(ds):
        rows = ds.frame.select(external_id_text(ds.frame).alias("external_id"), "_file", "_row").collect()
    bad = rows.filter(pl.col("external_id").is_null() | (pl.col("external_id").str.len_bytes() > MAX_EXTERNAL_ID_BYTES))
    rejected = [{"dataset": DATASET, "key": None if r["external_id"] is None or len(r["external_id"].encode())
                 > MAX_EXTERNAL_ID_BYTES else identity.display_key(r["external_id"]), "column": "external_id",
                 "reason": NOT_TEXT if r["external_id"] is None else TOO_LONG, "file": r["_file"], "row": r["_row"]}
                for r in bad.iter_rows(named=True)]
    ids = (rows.join(bad.select("_file", "_row"), on=["_file", "_row"], how="anti")
           .unique("external_id", keep="first", maintain_order=True).select("external_id"))
    return ids, rejected


def plan_deletes(run_id: str, plan_dir: Path, state: Path, source: str, mapping: str | None, ledger,
                 settings: DeleteSettings) -> DeleteReport | None:
    """Write and record the delete plan of a run (once: a resumed run keeps its plan); None without deletes."""
    drop_from_snapshot(state, ledger, run_id)  # deletes a killed run acknowledged but did not commit
    report = DeleteReport()
    path = plan_dir / PLAN_FILE
    if not path.exists():
        found = read_deletes(source, mapping, plan_dir / "work" / "deletes")
        if found is None:
            return None
        ids, report.rejected_rows = found
        # Deleted before: a tombstone (never loaded again unless undeleted), nothing to delete.
        skip = _deleted(ledger, committed=True)
        report.already_deleted = ids.join(skip, on="external_id", how="semi").height
        todo = ids.join(skip, on="external_id", how="anti")
        todo = _batched(todo)
        plan_dir.mkdir(parents=True, exist_ok=True)
        ids.write_parquet(plan_dir / LISTED_FILE)
        todo.write_parquet(path)
        ledger.add_delete_batches(run_id, todo.group_by("batch_no").len().sort("batch_no").iter_rows())
    todo = pl.read_parquet(path)
    report.requested = todo.height
    report.batches = math.ceil(todo.height / MAX_IDS)
    acked_users = _snapshot_ids(state).height
    over_count = todo.height > settings.max_count
    over_share = acked_users >= max(1, settings.min_users) and todo.height > settings.max_share * acked_users
    if (over_count or over_share) and not settings.allow_mass and not ledger.deletes_started(run_id):
        report.held = True
        share = f" ({todo.height / acked_users:.0%} of the {acked_users} acknowledged users)" if acked_users else ""
        report.message = (f"deletes held: {todo.height} users to delete{share} is over the guard "
                          f"(at most {settings.max_count} users and {settings.max_share:.0%} of acknowledged users "
                          "per run); check the user_deletes export, then run again with --allow-mass-delete")
    return report


def apply_deletes(run_id: str, plan_dir: Path, ledger, endpoint: str, api_key: str, settings: DeleteSettings,
                  report: DeleteReport) -> DeleteReport:
    """Send every delete batch of the run not yet acknowledged or rejected; fill `report`."""
    todo = pl.read_parquet(plan_dir / PLAN_FILE)
    statuses = {b.batch_no: b.status for b in ledger.delete_batches(run_id)}
    batches = [(b, ids) for b, ids in
               todo.group_by("batch_no", maintain_order=True).agg("external_id").sort("batch_no").iter_rows()
               if statuses.get(b) not in FINAL_REQUESTS]
    client = DeleteClient(endpoint, api_key, rate=settings.rate_limit, max_attempts=settings.max_attempts,
                          max_seconds=settings.max_retry_seconds, timeout=settings.timeout_seconds)

    def sending(batch_no: int) -> None:
        ledger.mark_delete_sending(run_id, batch_no)

    ids_of = dict(batches)

    def result(batch_no: int, r: DeleteResult) -> None:
        ledger.record_delete_result(run_id, batch_no, r, ids_of[batch_no])

    if batches:
        client.delete_all(batches, sending, result)
    return report


def commit_deletes(run_id: str, plan_dir: Path, state: Path, ledger, report: DeleteReport) -> DeleteReport:
    """Drop the acknowledged users from the snapshot and complete `report`."""
    rows = ledger.delete_batches(run_id)
    status = {b.batch_no: b.status for b in rows}
    report.requests = sum(b.requests for b in rows)
    report.acknowledged_batches = sum(1 for s in status.values() if s == RequestState.ACKNOWLEDGED)
    report.pending_batches = sum(1 for s in status.values() if s not in FINAL_REQUESTS)
    todo = pl.read_parquet(plan_dir / PLAN_FILE).with_columns(
        _status=pl.col("batch_no").replace_strict(status, default=RequestState.PLANNED.value, return_dtype=pl.Utf8))
    # Shown in the report and artifacts: an email or phone user reads `email` / `phone` (transforms/identity.py).
    report.deleted_ids = [identity.display_key(k) for k in
                          todo.filter(pl.col("_status") == RequestState.ACKNOWLEDGED)["external_id"].to_list()]
    report.pending_ids = [identity.display_key(k) for k in
                          todo.filter(pl.col("_status") != RequestState.ACKNOWLEDGED)["external_id"].to_list()]
    drop_from_snapshot(state, ledger, run_id)
    keep_out(state, ledger, run_id)
    return report


def keep_out(state: Path, ledger, run_id: str) -> None:
    """Hold every tombstoned user (snapshot `held`, dataset user_deletes), so no later export loads them again,
    whatever its user_deletes lists: transforms/deltas.py rejects their rows with a reason. Only `undelete`
    lifts a tombstone (connectors/state/tombstones.py)."""
    keys = _deleted(ledger, committed=True)["external_id"]
    snapshot = Snapshot(state, journal=journal_for(state, ledger, run_id))
    held = snapshot.scan("held").collect()
    mine = held.filter(pl.col("dataset") == DATASET)
    if sorted(mine["key"].to_list()) == sorted(keys.to_list()):
        return
    rows = pl.DataFrame({"dataset": DATASET, "key": keys, "fingerprint": None, "status": HeldReason.DELETED.value,
                         "reason": "deleted on behalf of user_deletes", "run_id": run_id}).cast(SCHEMAS["held"])
    snapshot.replace("held", pl.concat([held.filter(pl.col("dataset") != DATASET), rows]).sort(["dataset", "key"]))


def drop_from_snapshot(state: Path, ledger, run_id: str) -> int:
    """Remove every acknowledged, not yet committed deleted user from the snapshot (users parts and push
    tokens, through the journaled writer), then mark them committed. Returns how many."""
    done = _deleted(ledger, committed=False)
    if done.height == 0:
        return 0
    snapshot = Snapshot(state, journal=journal_for(state, ledger, run_id))
    for part in sorted((snapshot.root / "users").glob("part-*.parquet")):
        p = int(part.stem.split("-")[1])
        frame = snapshot.scan_users_part(p).collect()
        kept = frame.join(done, on="external_id", how="anti")
        if kept.height != frame.height:
            snapshot.replace_users_part(p, kept)
    if snapshot.path("push_tokens").exists():
        tokens = snapshot.scan("push_tokens").collect()
        kept = tokens.join(done, on="external_id", how="anti")
        if kept.height != tokens.height:
            snapshot.replace("push_tokens", kept)
    ledger.mark_deletes_committed(done["external_id"].to_list())
    return done.height


def run_deletes(run_id: str, plan_dir: Path, state: Path, source: str, mapping: str | None, ledger,
                endpoint: str, api_key: str, settings: DeleteSettings) -> DeleteReport | None:
    """plan → guard → apply → commit for one run's deletes; None when the source has no `user_deletes`."""
    report = plan_deletes(run_id, plan_dir, state, source, mapping, ledger, settings)
    if report is None or report.held:
        return report
    apply_deletes(run_id, plan_dir, ledger, endpoint, api_key, settings, report)
    return commit_deletes(run_id, plan_dir, state, ledger, report)


def undelete(state: Path, ledger, ids: list[str]) -> tuple[list[str], list[str]]:
    """Lift the tombstones of `ids` (logged in the ledger) and release them from the snapshot's held rows, so a
    later export loads them again. Returns (lifted, ids that had no tombstone)."""
    lifted, unknown = ledger.lift_tombstones(ids)
    if lifted:
        keep_out(state, ledger, "undelete")
    return lifted, unknown


def _batched(todo: pl.DataFrame) -> pl.DataFrame:
    """Number the ids 50 per request, one identifier kind per request: Braze takes only one of external_ids,
    user_aliases, email_addresses or phone_numbers in a request (docs/identity.md)."""
    rank = {k: i for i, k in enumerate(identity.KINDS)}
    todo = todo.with_columns(_k=identity.kind_of(pl.col("external_id")).replace_strict(rank, return_dtype=pl.Int8))
    todo = todo.sort("_k", maintain_order=True).with_columns(_i=pl.int_range(pl.len(), dtype=pl.Int64).over("_k"))
    first = (pl.col("_i") % MAX_IDS == 0).cast(pl.Int64)
    return todo.with_columns(batch_no=first.cum_sum() - 1).drop("_k", "_i")


def _snapshot_ids(state: Path) -> pl.DataFrame:
    return Snapshot(state).scan("users").select("external_id").collect()


def _deleted(ledger, *, committed: bool) -> pl.DataFrame:
    return pl.DataFrame({"external_id": ledger.deleted_users(committed=committed)}, schema={"external_id": pl.Utf8})


def append_rejects(path: Path, rows: list[dict]) -> int:
    """Add user_deletes rows without a usable id to the run's rejects file (same columns)."""
    if not path.name or not rows:
        return 0
    frame = pl.DataFrame(rows, schema={"dataset": pl.Utf8, "key": pl.Utf8, "column": pl.Utf8, "reason": pl.Utf8,
                                       "file": pl.Utf8, "row": pl.Int64})
    frame = frame.with_columns(value=pl.lit(None, pl.Utf8)).select(
        "dataset", "key", "column", "value", "reason", "file", "row")
    if path.exists():
        frame = pl.concat([pl.read_csv(path, schema=frame.schema), frame])
    frame.write_csv(path)
    return len(rows)
