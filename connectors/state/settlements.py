"""The ledger's record of in-doubt batches and how `settle` decided them (`settlements`, `outcomes`, `batches`).

Held occurrences are the `pending` outcomes of batches flagged `in_doubt`. A decision is written here first
(so `repair` replays it) and then applied to the snapshot by braze_migrate/ops/settle.py.
"""

from __future__ import annotations

import time
from typing import Literal

from connectors.state.sqlbase import SqlBackend
from connectors.states import BatchState

Decision = Literal["delivered", "resend"]


class SettlementOps(SqlBackend):
    """Typed operations on in-doubt batches and their settlements (a part of `LedgerBase`)."""

    def held_outcomes(self, run_id: str) -> list[tuple[int, str, int]]:
        """(batch_no, array, index) of every object still pending in an in-doubt batch of the run."""
        rows = self._execute(
            'SELECT o.batch_no, o."array", o.idx FROM outcomes o JOIN batches b ON b.run_id=o.run_id AND '
            "b.batch_no=o.batch_no WHERE o.run_id=? AND o.outcome='pending' AND b.in_doubt=1",
            (run_id,),
        ).fetchall()
        return [(int(b), a, int(i)) for b, a, i in rows]

    def runs_in_doubt(self, committed_before: float) -> list[str]:
        """Committed runs (last updated at or before `committed_before`) with a batch still in doubt."""
        rows = self._execute(
            "SELECT DISTINCT r.run_id FROM runs r JOIN batches b ON b.run_id = r.run_id WHERE r.status='committed' "
            "AND b.in_doubt=1 AND r.updated_at <= ? ORDER BY r.run_id", (committed_before,)).fetchall()
        return [r[0] for r in rows]

    def has_in_doubt(self, run_id: str) -> bool:
        row = self._execute("SELECT COUNT(*) FROM batches WHERE run_id=? AND in_doubt=1", (run_id,)).fetchone()
        return int(row[0]) > 0

    def settle_batches(self, run_id: str, held: list[tuple[int, int]], decision: Decision, decided_by: str) -> None:
        """Record a decision on (batch_no, occurrences held) of a run, in one transaction. Delivered: the pending
        events and purchases go (the batch acknowledged them; it is acknowledged once nothing else is pending);
        resend: the batch is no longer in doubt, so its pending occurrences are not held."""
        with self._transaction():
            for batch_no, n in held:
                if decision == "delivered":
                    self._execute(
                        'DELETE FROM outcomes WHERE run_id=? AND batch_no=? AND outcome=\'pending\' AND "array" IN '
                        "('events','purchases')", (run_id, batch_no))
                    left = self._execute("SELECT COUNT(*) FROM outcomes WHERE run_id=? AND batch_no=? AND "
                                         "outcome='pending'", (run_id, batch_no)).fetchone()[0]
                    status = BatchState.ACKNOWLEDGED if left == 0 else BatchState.PENDING
                    self._move("batches", status, "in_doubt=0", (), "run_id=? AND batch_no=?", (run_id, batch_no))
                else:
                    self._execute("UPDATE batches SET in_doubt=0 WHERE run_id=? AND batch_no=?", (run_id, batch_no))
                self._execute("INSERT INTO settlements VALUES (?,?,?,?,?,?)",
                              (run_id, batch_no, decision, decided_by, n, time.time()))
