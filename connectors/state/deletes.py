"""The ledger's record of user deletes: one row per `/users/delete` request (`delete_batches`), written ahead
like track batches, and every user it deleted (`deleted_users`, `committed` once the snapshot dropped them)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from connectors.state.sqlbase import SqlBackend
from connectors.states import RequestState


@dataclass(frozen=True, slots=True)
class DeleteBatch:
    batch_no: int
    status: RequestState
    requests: int


class DeleteOps(SqlBackend):
    """Typed operations on delete requests and deleted users (a part of `LedgerBase`)."""

    def add_delete_batches(self, run_id: str, rows: Iterable[tuple[int, int]]) -> None:
        """Record a delete plan: (batch_no, n_ids) per request, all `planned` (again: idempotent)."""
        with self._transaction():
            for batch_no, n in rows:
                self._execute("INSERT INTO delete_batches (run_id, batch_no, status, n_ids) VALUES (?,?,?,?) "
                              "ON CONFLICT DO NOTHING", (run_id, batch_no, RequestState.PLANNED.value, n))

    def delete_batches(self, run_id: str) -> list[DeleteBatch]:
        rows = self._execute("SELECT batch_no, status, requests FROM delete_batches WHERE run_id=? ORDER BY batch_no",
                             (run_id,)).fetchall()
        return [DeleteBatch(int(b), RequestState(s), int(r)) for b, s, r in rows]

    def deletes_started(self, run_id: str) -> bool:
        """Some delete request of the run already left (the guard was passed, or accepted, before)."""
        row = self._execute("SELECT COUNT(*) FROM delete_batches WHERE run_id=? AND status != 'planned'",
                            (run_id,)).fetchone()
        return bool(row and row[0])

    def mark_delete_sending(self, run_id: str, batch_no: int) -> None:
        """Write-ahead: committed before the request leaves."""
        self._move("delete_batches", RequestState.SENDING, "attempts=attempts+1, updated_at=?", (time.time(),),
                   "run_id=? AND batch_no=?", (run_id, batch_no))

    def record_delete_result(self, run_id: str, batch_no: int, result, ids: Iterable[str]) -> None:
        """The outcome of one delete request (a `DeleteResult`) and, when acknowledged, its deleted `ids`, in one
        transaction: a kill right after leaves either a request to send again (deleting is idempotent) or a
        recorded delete."""
        now = time.time()
        with self._transaction():
            status = RequestState(result.status)
            self._move("delete_batches", status, "requests=requests+?, throttled=throttled+?, deleted=?, reason=?, "
                       "updated_at=?", (result.requests, result.throttled, result.deleted, result.reason, now),
                       "run_id=? AND batch_no=?", (run_id, batch_no))
            if status is RequestState.ACKNOWLEDGED:
                self.record_deleted(run_id, ids, at=now)

    def record_deleted(self, run_id: str, ids: Iterable[str], *, at: float | None = None,
                       committed: bool = False) -> None:
        """Users Braze deleted on behalf of run `run_id` (`committed`: the snapshot already dropped them)."""
        at = time.time() if at is None else at
        self._executemany("INSERT INTO deleted_users VALUES (?,?,?,?) ON CONFLICT (external_id) DO UPDATE "
                          "SET run_id=excluded.run_id, deleted_at=excluded.deleted_at, committed=excluded.committed",
                          [(eid, run_id, at, int(committed)) for eid in ids])

    def deleted_users(self, *, committed: bool) -> list[str]:
        """External ids of deleted users the snapshot already dropped (`committed`) or not yet."""
        rows = self._execute("SELECT external_id FROM deleted_users WHERE committed=?", (int(committed),)).fetchall()
        return [r[0] for r in rows]

    def mark_deletes_committed(self, ids: Iterable[str]) -> None:
        """The snapshot dropped these deleted users."""
        with self._transaction():
            self._executemany("UPDATE deleted_users SET committed=1 WHERE external_id=?", [(eid,) for eid in ids])
