"""The ledger's interface and the SQL both backends run: every run, every batch and who is sending it.

A batch is marked `sending` (committed) before its first byte leaves, and gets its final status only after
Braze answered, so a killed process leaves an exact record: `acknowledged` batches are never resent,
`sending` ones are *in doubt*, `planned` and `claimed` ones were never sent.

Several workers load one run by *claiming*: a worker takes a block of `planned` batches atomically
(status `claimed`, owner, lease expiry), and moves each to `sending` only if it still owns the claim, so no
two workers ever send the same batch. Claims whose lease expired, or whose owner is a dead process on this
host, are claimable again: `claimed` ones as never sent, `sending` ones as in doubt. The shared rate budget
(`connectors/braze/ratelimit.py`) leases its permits from the same database.

Backends: `ledger.Ledger` (SQLite in the state folder) and `ledger_pg.PgLedger` (PostgreSQL), both built on
`LedgerBase`; `ledgers.open_ledger` picks one. This module imports neither.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from abc import abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from connectors.state.deletes import DeleteOps
from connectors.state.plan_digests import PlanFileOps
from connectors.state.schema import upgrade
from connectors.state.settlements import SettlementOps
from connectors.state.sqlbase import LedgerUnavailable, SqlBackend
from connectors.state.tombstones import TombstoneOps
from connectors.states import OPEN_RUNS, UNFINISHED_BATCHES, BatchState, Outcome, RunState

__all__ = ["LEASE_SECONDS", "OPEN_STATUSES", "UNFINISHED_BATCHES", "Claim", "LedgerBase", "LedgerUnavailable", "Run",
           "SqlBackend"]

RUN_COLUMNS = "run_id, kind, source, source_fingerprint, status, created_at, updated_at, settings, summary"

OPEN_STATUSES = OPEN_RUNS  # held: by the guards (guards.py)
# A claim is the owner's for this long after its last heartbeat; a live worker renews it far more often.
LEASE_SECONDS = 60.0


@dataclass(frozen=True)
class Run:
    run_id: str
    kind: str
    source: str
    source_fingerprint: str
    status: RunState
    created_at: float
    settings: dict
    summary: dict | None
    updated_at: float | None = None


@dataclass(frozen=True, slots=True, order=True)
class Claim:
    """A batch this worker may send. `in_doubt`: an earlier owner marked it sending and vanished."""

    batch_no: int
    in_doubt: bool


class LedgerBase(SettlementOps, DeleteOps, TombstoneOps, PlanFileOps, SqlBackend):
    """Every operation on the ledger, in SQL both backends accept: runs, batches, per-object outcomes,
    workers and the rate budget here; settlements and deletes from their modules (connectors/state/).

    A backend supplies the connection and its dialect (`SqlBackend`) and calls `_migrate` when it opens:
    the schema is `connectors.state.schema`. Nothing outside connectors/state/ runs SQL on a ledger.
    """

    def _migrate(self, name: str) -> None:
        """Create the schema, or upgrade one an earlier release wrote, in place (`schema.upgrade`)."""
        upgrade(self, name)

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def reopen(self, *, durable: bool = True) -> LedgerBase:
        """A second connection to the same ledger, for another thread (heartbeat, rate budget). `durable=False`
        may lose its last commits to a database crash: enough for budget leases, never for batches."""

    # runs
    def new_run(self, kind: str, source: str, source_fingerprint: str, settings: dict) -> str:
        run_id = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:6]
        now = time.time()
        self._execute(
            f"INSERT INTO runs ({RUN_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,NULL)",
            (run_id, kind, source, source_fingerprint, RunState.PLANNING.value, now, now, json.dumps(settings)),
        )
        return run_id

    def set_run_status(self, run_id: str, status: RunState, summary: dict | None = None) -> None:
        """Move the run to `status` (a legal transition, states.TRANSITIONS), recording its summary if given."""
        sets, params = ("updated_at=?", (time.time(),)) if summary is None else (
            "updated_at=?, summary=?", (time.time(), json.dumps(summary)))
        self._move("runs", RunState(status), sets, params, "run_id=?", (run_id,))

    def run(self, run_id: str) -> Run:
        row = self._execute(f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id=?", (run_id,)).fetchone()
        if row is None:
            raise KeyError(run_id)
        return _run(row)

    def unfinished_run(self) -> Run | None:
        """The newest run that was planned but not committed: it must be finished before anything new."""
        row = self._execute(
            f"SELECT {RUN_COLUMNS} FROM runs WHERE status IN ({','.join('?' * len(OPEN_STATUSES))}) "
            "ORDER BY created_at DESC LIMIT 1",
            OPEN_STATUSES,
        ).fetchone()
        return _run(row) if row else None

    def runs(self, limit: int = 20) -> list[Run]:
        rows = self._execute(f"SELECT {RUN_COLUMNS} FROM runs ORDER BY created_at DESC LIMIT ?", (limit,)).fetchall()
        return [_run(r) for r in rows]

    # batches
    def add_batches(self, run_id: str, rows: Iterable[tuple[int, bool, int]]) -> None:
        """Record the plan: (batch_no, has_events_or_purchases, n_objects) per batch, all `planned`."""
        with self._transaction():
            self._executemany(
                "INSERT INTO batches (run_id, batch_no, status, has_events, n_objects) "
                "VALUES (?, ?, 'planned', ?, ?) ON CONFLICT DO NOTHING",
                ((run_id, b, int(h), n) for b, h, n in rows),
            )

    def batch_statuses(self, run_id: str) -> dict[int, BatchState]:
        rows = self._execute("SELECT batch_no, status FROM batches WHERE run_id=?", (run_id,)).fetchall()
        return {b: BatchState(s) for b, s in rows}

    def status_counts(self, run_id: str) -> dict[BatchState, int]:
        rows = self._execute("SELECT status, COUNT(*) FROM batches WHERE run_id=? GROUP BY status", (run_id,))
        return {BatchState(s): n for s, n in rows.fetchall()}

    def mark_sending(self, run_id: str, batch_no: int, owner: str | None = None) -> bool:
        """Write-ahead: persisted before the request leaves. With `owner`, only while that worker still holds
        the claim; False means the claim was lost and the batch must not be sent."""
        if owner is None:
            return self._move("batches", BatchState.SENDING, "attempts=attempts+1, updated_at=?", (time.time(),),
                              "run_id=? AND batch_no=?", (run_id, batch_no)) == 1
        cur = self._execute(
            "UPDATE batches SET status='sending', attempts=attempts+1, updated_at=? "
            "WHERE run_id=? AND batch_no=? AND status='claimed' AND owner=?",
            (time.time(), run_id, batch_no, owner),
        )
        return cur.rowcount == 1

    def record_result(self, run_id: str, result) -> None:
        """Final outcome of one batch and its rejected/pending objects, in one transaction."""
        upsert = ('INSERT INTO outcomes VALUES (?,?,?,?,?,?) ON CONFLICT (run_id, batch_no, "array", idx) '
                  "DO UPDATE SET outcome=excluded.outcome, reason=excluded.reason")
        with self._transaction():
            self._execute("DELETE FROM outcomes WHERE run_id=? AND batch_no=?", (run_id, result.batch_no))
            self._executemany(upsert, [
                *((run_id, result.batch_no, e.array, e.index, Outcome.REJECTED.value, e.reason) for e in result.errors),
                *((run_id, result.batch_no, a, i, Outcome.PENDING.value, "in doubt" if result.in_doubt else "no answer")
                  for a, i in result.pending),
            ])
            self._move("batches", BatchState(result.status),
                       "in_doubt=?, requests=requests+?, retries=retries+?, throttled=throttled+?, updated_at=?, "
                       "lease_until=NULL",
                       (int(result.in_doubt), result.requests, result.retries, result.throttled, time.time()),
                       "run_id=? AND batch_no=?", (run_id, result.batch_no))

    def assume_acknowledged(self, run_id: str) -> int:
        """Every batch of the run acknowledged without sending it: for benchmarks and fixtures that need the
        state a complete load leaves, never for a real run. Returns how many batches."""
        with self._transaction():
            self._move("batches", BatchState.SENDING, "attempts=attempts+1", (), "run_id=?", (run_id,))
            return self._move("batches", BatchState.ACKNOWLEDGED, "requests=requests+1, updated_at=?", (time.time(),),
                              "run_id=?", (run_id,))

    def batches(self, run_id: str) -> list[dict]:
        cur = self._execute("SELECT * FROM batches WHERE run_id=? ORDER BY batch_no", (run_id,))
        cols = [c[0] for c in cur.description]
        return [dict(zip(cols, r)) for r in cur.fetchall()]

    def outcomes(self, run_id: str) -> list[tuple[int, str, int, str, str]]:
        rows = self._execute(
            'SELECT batch_no, "array", idx, outcome, reason FROM outcomes WHERE run_id=? '
            'ORDER BY batch_no, "array", idx',
            (run_id,),
        ).fetchall()
        return [tuple(r) for r in rows]

    def totals(self, run_id: str) -> dict:
        row = self._execute(
            "SELECT COUNT(*), COALESCE(SUM(requests),0), COALESCE(SUM(retries),0), COALESCE(SUM(throttled),0), "
            "COALESCE(SUM(CASE WHEN status='acknowledged' THEN 1 ELSE 0 END),0), COALESCE(SUM(in_doubt),0), "
            "COALESCE(SUM(n_objects),0), COALESCE(SUM(CASE WHEN status='acknowledged' THEN n_objects ELSE 0 END),0) "
            "FROM batches WHERE run_id=?",
            (run_id,),
        ).fetchone()
        keys = ("batches", "requests", "retries", "throttled", "acknowledged_batches", "in_doubt_batches",
                "objects", "acknowledged_objects")
        return dict(zip(keys, (int(v) for v in row)))

    # workers and claims
    def register_worker(self, run_id: str, *, now: float | None = None) -> str:
        """A new worker of this run, named after where it runs; its id owns the batches it claims."""
        host, pid = host_identity(), os.getpid()
        worker_id = f"{socket.gethostname()}-{pid}-{uuid.uuid4().hex[:6]}"
        now = time.time() if now is None else now
        self._execute(
            "INSERT INTO workers (worker_id, run_id, host, pid, started_at, seen_at) VALUES (?,?,?,?,?,?)",
            (worker_id, run_id, host, pid, now, now),
        )
        return worker_id

    def finish_worker(self, run_id: str, worker_id: str) -> int:
        """The worker stops: its claims not yet sent go back to `planned`. Returns how many."""
        released = self.release(run_id, worker_id)
        self._execute("UPDATE workers SET finished_at=? WHERE worker_id=?", (time.time(), worker_id))
        return released

    def workers(self, run_id: str) -> list[dict]:
        """Every worker of the run with the number of batches it sent (acknowledged or pending)."""
        cur = self._execute(
            "SELECT w.worker_id, w.host, w.pid, w.started_at, w.seen_at, w.finished_at, "
            "(SELECT COUNT(*) FROM batches b WHERE b.run_id=w.run_id AND b.owner=w.worker_id "
            " AND b.status IN ('acknowledged','pending')) AS batches "
            "FROM workers w WHERE w.run_id=? ORDER BY w.started_at",
            (run_id,),
        )
        cols = [c[0] for c in cur.description]
        return [dict(zip(cols, r)) for r in cur.fetchall()]

    def heartbeat(self, run_id: str, worker_id: str, *, lease_seconds: float = LEASE_SECONDS,
                  now: float | None = None) -> None:
        """Renew the leases of this worker's claimed and sending batches."""
        now = time.time() if now is None else now
        with self._transaction():
            self._execute("UPDATE workers SET seen_at=? WHERE worker_id=?", (now, worker_id))
            self._execute(
                "UPDATE batches SET lease_until=? WHERE run_id=? AND owner=? AND status IN ('claimed','sending')",
                (now + lease_seconds, run_id, worker_id),
            )

    def claim(self, run_id: str, worker_id: str, n: int, *, lease_seconds: float = LEASE_SECONDS,
              now: float | None = None) -> list[Claim]:
        """Atomically take up to n batches, lowest numbers first: `planned` ones, and `claimed`/`sending` ones
        whose lease expired (a `sending` one comes back flagged in doubt: it may have been sent)."""
        now = time.time() if now is None else now
        sql = (
            "UPDATE batches SET status='claimed', owner=?, lease_until=?, "
            "in_doubt = CASE WHEN status='sending' THEN 1 ELSE in_doubt END "
            "WHERE run_id=? AND batch_no IN ("
            " SELECT batch_no FROM batches WHERE run_id=? AND status IN ('planned','claimed','sending')"
            "  AND (status='planned' OR COALESCE(lease_until, 0) < ?)"
            f" ORDER BY batch_no LIMIT ? {self.LOCK_ROWS}) "
            "RETURNING batch_no, in_doubt"
        )
        with self._transaction():
            rows = self._execute(sql, (worker_id, now + lease_seconds, run_id, run_id, now, n)).fetchall()
        return sorted(Claim(b, bool(d)) for b, d in rows)

    def claimable(self, run_id: str, *, now: float | None = None) -> int:
        """How many batches `claim` would hand out now."""
        now = time.time() if now is None else now
        row = self._execute(
            "SELECT COUNT(*) FROM batches WHERE run_id=? AND status IN ('planned','claimed','sending') "
            "AND (status='planned' OR COALESCE(lease_until, 0) < ?)",
            (run_id, now),
        ).fetchone()
        return int(row[0])

    def release(self, run_id: str, worker_id: str) -> int:
        """This worker's claims that were never sent go back to `planned` (an in-doubt flag stays)."""
        cur = self._execute(
            "UPDATE batches SET status='planned', owner=NULL, lease_until=NULL "
            "WHERE run_id=? AND owner=? AND status='claimed'",
            (run_id, worker_id),
        )
        return cur.rowcount

    def expire_dead_owners(self, run_id: str) -> list[str]:
        """End at once the leases of owners that are dead processes on this host (killed, crashed), so their
        batches need not wait for the lease to run out. Returns the dead owners' ids."""
        rows = self._execute(
            "SELECT DISTINCT w.worker_id, w.pid FROM batches b JOIN workers w ON w.worker_id = b.owner "
            "WHERE b.run_id=? AND b.status IN ('claimed','sending') AND w.host=?",
            (run_id, host_identity()),
        ).fetchall()
        dead = [worker for worker, pid in rows if not process_alive(pid)]
        for worker in dead:
            self._execute(
                "UPDATE batches SET lease_until=0 WHERE run_id=? AND owner=? AND status IN ('claimed','sending')",
                (run_id, worker),
            )
        return dead

    # the shared rate budget
    def lease(self, key: str, window: int, cap: int, n: int) -> tuple[int, int]:
        """Take up to n permits of fixed window `window` (at most `cap` per window over all workers); returns
        (permits granted, the window the budget is in now).

        One atomic upsert: a later window restarts the count, the current one grants what is left, an
        earlier one (a worker whose clock lags) grants nothing. SET expressions read the row as it was.
        """
        least, greatest = self.LEAST, self.GREATEST
        cap_now = f"{least}(budget.cap, excluded.cap)"
        grant = f"{greatest}(0, {least}(excluded.granted, {cap_now} - budget.used))"
        first = min(n, cap)
        row = self._execute(
            "INSERT INTO budget (key, win, cap, used, granted) VALUES (?,?,?,?,?) "
            "ON CONFLICT (key) DO UPDATE SET "
            f"cap = CASE WHEN excluded.win > budget.win THEN excluded.cap "
            f"  WHEN excluded.win = budget.win THEN {cap_now} ELSE budget.cap END, "
            f"granted = CASE WHEN excluded.win > budget.win THEN excluded.granted "
            f"  WHEN excluded.win = budget.win THEN {grant} ELSE 0 END, "
            f"used = CASE WHEN excluded.win > budget.win THEN excluded.used "
            f"  WHEN excluded.win = budget.win THEN budget.used + {grant} ELSE budget.used END, "
            f"win = {greatest}(budget.win, excluded.win) "
            "RETURNING granted, win",
            (key, window, cap, first, first),
        ).fetchone()
        return int(row[0]), int(row[1])


def host_identity() -> str:
    """This machine's name and PID namespace: a pid is only meaningful to workers that share both."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = "-"
    return f"{socket.gethostname()}/{namespace}"


def process_alive(pid: int) -> bool:
    """Whether a process of this host is still running (a zombie, killed but not yet reaped, is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _run(row) -> Run:
    return Run(row[0], row[1], row[2], row[3], RunState(row[4]), row[5], json.loads(row[7]), json.loads(row[8]) if row[8] else None,
               row[6])
