"""The state of identity requests: `/users/identify` (an alias-only user gets an external_id),
`/users/external_ids/rename` and `/users/external_ids/remove` — their ledger table and every statement on it,
and the re-keying of the snapshot once Braze acknowledged a change.

Ledger, written ahead like track batches: `identity_batches` holds one row per request (`planned` when the
plan is recorded, `sending` committed before the request leaves, then `acknowledged`, `rejected` (a 400) or
`pending` (no answer within the retry budget)); `identity_changes` holds every change Braze acknowledged
(`kind`, `from_key` -> `to_key`, user keys of transforms/identity.py), `committed` once the snapshot follows
it. An acknowledged change is never requested again: a later export listing it again is skipped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import polars as pl

from connectors.state.ledger_base import LedgerBase
from connectors.state.snapshot import SCHEMAS, Snapshot, partition_of
from connectors.states import RequestState

Kind = Literal["identify", "rename", "remove"]
Status = RequestState
CHANGES = {"kind": pl.Utf8, "from_key": pl.Utf8, "to_key": pl.Utf8}


@dataclass(frozen=True)
class IdentityBatch:
    run_id: str
    kind: str
    batch_no: int
    status: Status
    n_items: int
    requests: int
    throttled: int
    reason: str | None


class IdentityLedger:
    """Typed operations on `identity_batches` and `identity_changes` over a run ledger (SQLite or PostgreSQL)."""

    def __init__(self, ledger: LedgerBase) -> None:
        self.ledger = ledger  # its tables: schema.IDENTITY_REQUESTS

    def record_plan(self, run_id: str, kind: Kind, items: list[tuple[int, str, str]]) -> None:
        """(batch_no, from_key, to_key) of every planned change; each request `planned` (again: idempotent)."""
        counts: dict[int, int] = {}
        for batch_no, _, _ in items:
            counts[batch_no] = counts.get(batch_no, 0) + 1
        with self.ledger._transaction():
            for batch_no, n in sorted(counts.items()):
                self.ledger._execute(
                    "INSERT INTO identity_batches (run_id, kind, batch_no, status, n_items) VALUES (?,?,?,?,?) "
                    "ON CONFLICT DO NOTHING", (run_id, kind, batch_no, RequestState.PLANNED.value, n))
            for batch_no, from_key, to_key in items:
                self.ledger._execute(
                    "INSERT INTO identity_items (run_id, kind, batch_no, from_key, to_key) VALUES (?,?,?,?,?) "
                    "ON CONFLICT DO NOTHING", (run_id, kind, batch_no, from_key, to_key))

    def in_doubt(self, other_than: str) -> list[tuple[str, str, int, list[tuple[str, str]]]]:
        """(run_id, kind, batch_no, items) of every request another run left `sending` (killed while it was out)."""
        rows = self.ledger._execute(
            "SELECT b.run_id, b.kind, b.batch_no, i.from_key, i.to_key FROM identity_batches b JOIN identity_items i "
            "ON i.run_id=b.run_id AND i.kind=b.kind AND i.batch_no=b.batch_no WHERE b.status='sending' AND b.run_id<>? "
            "ORDER BY b.run_id, b.kind, b.batch_no, i.from_key", (other_than,)).fetchall()
        out: dict[tuple[str, str, int], list[tuple[str, str]]] = {}
        for run_id, kind, batch_no, from_key, to_key in rows:
            out.setdefault((run_id, kind, batch_no), []).append((from_key, to_key))
        return [(*k, v) for k, v in out.items()]

    def mark_sending(self, run_id: str, kind: Kind, batch_no: int) -> None:
        """Write-ahead: committed before the request leaves."""
        self.ledger._move("identity_batches", RequestState.SENDING, "attempts=attempts+1, updated_at=?", (time.time(),),
                          "run_id=? AND kind=? AND batch_no=?", (run_id, kind, batch_no))

    def record_result(self, run_id: str, kind: Kind, batch_no: int, status: Status, *, requests: int,
                      throttled: int, reason: str | None, done: list[tuple[str, str]]) -> None:
        """The request's outcome and the changes Braze made, in one transaction: after a kill -9 either the
        batch is still `sending` (settled by reading back) or its changes are recorded."""
        now = time.time()
        with self.ledger._transaction():
            self.ledger._move("identity_batches", RequestState(status), "requests=requests+?, throttled=throttled+?, "
                              "reason=?, updated_at=?", (requests, throttled, reason, now),
                              "run_id=? AND kind=? AND batch_no=?", (run_id, kind, batch_no))
            for from_key, to_key in done:
                self.ledger._execute(
                    "INSERT INTO identity_changes (kind, from_key, to_key, run_id, done_at) VALUES (?,?,?,?,?) "
                    "ON CONFLICT (kind, from_key) DO UPDATE SET to_key=excluded.to_key, run_id=excluded.run_id, "
                    "done_at=excluded.done_at, committed=0", (kind, from_key, to_key, run_id, now))

    def batches(self, run_id: str, kind: Kind | None = None) -> list[IdentityBatch]:
        sql = ("SELECT run_id, kind, batch_no, status, n_items, requests, throttled, reason FROM identity_batches "
               "WHERE run_id=?" + (" AND kind=?" if kind else "") + " ORDER BY kind, batch_no")
        params = (run_id, kind) if kind else (run_id,)
        return [IdentityBatch(*r) for r in self.ledger._execute(sql, params).fetchall()]

    def changes(self, *, committed: bool | None = None) -> pl.DataFrame:
        """Acknowledged changes (kind, from_key, to_key), all or only (un)committed ones."""
        sql = "SELECT kind, from_key, to_key FROM identity_changes"
        if committed is not None:
            sql += f" WHERE committed={int(committed)}"
        return pl.DataFrame(self.ledger._execute(sql + " ORDER BY done_at, kind, from_key").fetchall(),
                            schema=CHANGES, orient="row")

    def mark_committed(self, changes: pl.DataFrame) -> None:
        with self.ledger._transaction():
            for kind, from_key in changes.select("kind", "from_key").iter_rows():
                self.ledger._execute("UPDATE identity_changes SET committed=1 WHERE kind=? AND from_key=?",
                                     (kind, from_key))


def rekey(snapshot: Snapshot, changes: pl.DataFrame) -> None:
    """Move the acknowledged state of each `from_key` user to `to_key` (identify, rename), so the next night
    diffs the user under its new identity against what Braze holds.

    An identify into a user the snapshot already has keeps that user's values and fills in only the values it
    lacks from the alias user (Braze merges the fields found only on the alias-only profile); a rename, or an
    identify into an external_id the snapshot does not have, just changes the key. Push tokens follow their
    owner. Only the partitions holding a moved key are read and written (through the journaled writer).
    """
    moves = changes.filter(pl.col("kind").is_in(["identify", "rename"])).select("from_key", "to_key")
    if moves.height == 0:
        return
    n = snapshot.partitions(default=1)
    moves = moves.with_columns(_pf=partition_of(pl.col("from_key"), n), _pt=partition_of(pl.col("to_key"), n))

    def part(p: int) -> pl.DataFrame:
        exists = snapshot.users_part_path(p).exists()
        return snapshot.scan_users_part(p).collect() if exists else pl.DataFrame(schema=SCHEMAS["users"])

    parts = {p: part(p) for p in sorted({*moves["_pf"].to_list(), *moves["_pt"].to_list()})}
    leaving = moves.select(pl.col("from_key").alias("external_id"), "to_key")
    moved = pl.concat([frame.join(leaving, on="external_id", how="inner") for frame in parts.values()],
                      how="diagonal_relaxed").drop("external_id").rename({"to_key": "external_id"})
    if moved.height == 0:
        return _move_tokens(snapshot, moves)
    moved = moved.with_columns(_p=partition_of(pl.col("external_id"), n))
    for p, frame in parts.items():
        incoming = moved.filter(pl.col("_p") == p).drop("_p")
        staying = frame.join(leaving.select("external_id"), on="external_id", how="anti")
        merged = _fill(staying.join(incoming.select("external_id"), on="external_id", how="semi"), incoming)
        fresh = incoming.join(staying.select("external_id"), on="external_id", how="anti")
        rows = pl.concat([staying.join(incoming.select("external_id"), on="external_id", how="anti"), merged,
                          fresh], how="diagonal_relaxed")
        if rows.height != frame.height or incoming.height:
            snapshot.replace_users_part(p, rows.sort("external_id"))
    _move_tokens(snapshot, moves)


def _move_tokens(snapshot: Snapshot, moves: pl.DataFrame) -> None:
    """Push tokens follow their owner's new key."""
    if not snapshot.path("push_tokens").exists():
        return
    tokens = snapshot.scan("push_tokens").collect()
    owner = tokens.join(moves.select("from_key", "to_key"), left_on="external_id", right_on="from_key", how="left")
    if owner["to_key"].is_not_null().any():
        snapshot.replace("push_tokens", owner.with_columns(external_id=pl.coalesce("to_key", "external_id"))
                         .drop("to_key"))


def _fill(target: pl.DataFrame, source: pl.DataFrame) -> pl.DataFrame:
    """`target` rows with each null value taken from `source` (same external_id), and `source`'s columns that
    `target` lacks."""
    if target.height == 0:
        return target
    joined = target.join(source, on="external_id", how="left", suffix="__src")
    out = [pl.col("external_id")]
    for c in [*target.columns, *(c for c in source.columns if c not in target.columns)]:
        if c == "external_id":
            continue
        out.append(pl.coalesce(c, f"{c}__src").alias(c) if f"{c}__src" in joined.columns else pl.col(c))
    return joined.select(out)
