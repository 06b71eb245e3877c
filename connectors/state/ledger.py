"""The write-ahead ledger: every run and every batch, in SQLite inside the state folder.

A batch is marked `sending` (committed to disk) before its first byte leaves, and gets its final status
only after Braze answered, so a killed process leaves an exact record: `acknowledged` batches are never
resent, `sending` ones are *in doubt*, `planned` ones were never sent.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    source TEXT NOT NULL,
    source_fingerprint TEXT NOT NULL,
    status TEXT NOT NULL,            -- planning | planned | loading | loaded | committed | abandoned
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    settings TEXT NOT NULL,
    summary TEXT
);
CREATE TABLE IF NOT EXISTS batches (
    run_id TEXT NOT NULL,
    batch_no INTEGER NOT NULL,
    status TEXT NOT NULL,            -- planned | sending | acknowledged | pending
    has_events INTEGER NOT NULL,
    n_objects INTEGER NOT NULL,
    in_doubt INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    requests INTEGER NOT NULL DEFAULT 0,
    retries INTEGER NOT NULL DEFAULT 0,
    throttled INTEGER NOT NULL DEFAULT 0,
    updated_at REAL,
    PRIMARY KEY (run_id, batch_no)
);
CREATE TABLE IF NOT EXISTS outcomes (
    run_id TEXT NOT NULL,
    batch_no INTEGER NOT NULL,
    array TEXT NOT NULL,
    idx INTEGER NOT NULL,
    outcome TEXT NOT NULL,           -- rejected | pending
    reason TEXT,
    PRIMARY KEY (run_id, batch_no, array, idx)
);
"""

OPEN_STATUSES = ("planning", "planned", "loading", "loaded")


@dataclass(frozen=True)
class Run:
    run_id: str
    kind: str
    source: str
    source_fingerprint: str
    status: str
    created_at: float
    settings: dict
    summary: dict | None


class Ledger:
    """Runs, batches and per-object outcomes. One connection per process; WAL for crash safety."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a killed process (the case we test); only power loss may drop the tail.
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    # runs
    def new_run(self, kind: str, source: str, source_fingerprint: str, settings: dict) -> str:
        run_id = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:6]
        now = time.time()
        self.db.execute(
            "INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,NULL)",
            (run_id, kind, source, source_fingerprint, "planning", now, now, json.dumps(settings)),
        )
        return run_id

    def set_run_status(self, run_id: str, status: str, summary: dict | None = None) -> None:
        if summary is None:
            self.db.execute("UPDATE runs SET status=?, updated_at=? WHERE run_id=?", (status, time.time(), run_id))
        else:
            self.db.execute(
                "UPDATE runs SET status=?, updated_at=?, summary=? WHERE run_id=?",
                (status, time.time(), json.dumps(summary), run_id),
            )

    def run(self, run_id: str) -> Run:
        row = self.db.execute("SELECT * FROM runs WHERE run_id=?", (run_id,)).fetchone()
        if row is None:
            raise KeyError(run_id)
        return _run(row)

    def unfinished_run(self) -> Run | None:
        """The newest run that was planned but not committed: it must be finished before anything new."""
        row = self.db.execute(
            f"SELECT * FROM runs WHERE status IN ({','.join('?' * len(OPEN_STATUSES))}) "
            "ORDER BY created_at DESC LIMIT 1",
            OPEN_STATUSES,
        ).fetchone()
        return _run(row) if row else None

    def runs(self, limit: int = 20) -> list[Run]:
        rows = self.db.execute("SELECT * FROM runs ORDER BY created_at DESC LIMIT ?", (limit,)).fetchall()
        return [_run(r) for r in rows]

    # batches
    def add_batches(self, run_id: str, rows: Iterable[tuple[int, bool, int]]) -> None:
        """Record the plan: (batch_no, has_events_or_purchases, n_objects) per batch, all `planned`."""
        self.db.execute("BEGIN")
        self.db.executemany(
            "INSERT OR IGNORE INTO batches (run_id, batch_no, status, has_events, n_objects) "
            "VALUES (?, ?, 'planned', ?, ?)",
            ((run_id, b, int(h), n) for b, h, n in rows),
        )
        self.db.execute("COMMIT")

    def batch_statuses(self, run_id: str) -> dict[int, str]:
        return dict(self.db.execute("SELECT batch_no, status FROM batches WHERE run_id=?", (run_id,)))

    def mark_sending(self, run_id: str, batch_no: int) -> None:
        """Write-ahead: persisted before the request leaves."""
        self.db.execute(
            "UPDATE batches SET status='sending', attempts=attempts+1, updated_at=? WHERE run_id=? AND batch_no=?",
            (time.time(), run_id, batch_no),
        )

    def record_result(self, run_id: str, result) -> None:
        """Final outcome of one batch and its rejected/pending objects, in one transaction."""
        db = self.db
        db.execute("BEGIN")
        db.execute("DELETE FROM outcomes WHERE run_id=? AND batch_no=?", (run_id, result.batch_no))
        db.executemany(
            "INSERT OR REPLACE INTO outcomes VALUES (?,?,?,?, 'rejected', ?)",
            ((run_id, result.batch_no, e.array, e.index, e.reason) for e in result.errors),
        )
        db.executemany(
            "INSERT OR REPLACE INTO outcomes VALUES (?,?,?,?, 'pending', ?)",
            ((run_id, result.batch_no, a, i, "in doubt" if result.in_doubt else "no answer") for a, i in result.pending),
        )
        db.execute(
            "UPDATE batches SET status=?, in_doubt=?, requests=requests+?, retries=retries+?, "
            "throttled=throttled+?, updated_at=? WHERE run_id=? AND batch_no=?",
            (result.status, int(result.in_doubt), result.requests, result.retries, result.throttled,
             time.time(), run_id, result.batch_no),
        )
        db.execute("COMMIT")

    def batches(self, run_id: str) -> list[dict]:
        cur = self.db.execute("SELECT * FROM batches WHERE run_id=? ORDER BY batch_no", (run_id,))
        cols = [c[0] for c in cur.description]
        return [dict(zip(cols, r)) for r in cur.fetchall()]

    def outcomes(self, run_id: str) -> list[tuple[int, str, int, str, str]]:
        return self.db.execute(
            "SELECT batch_no, array, idx, outcome, reason FROM outcomes WHERE run_id=? ORDER BY batch_no, array, idx",
            (run_id,),
        ).fetchall()

    def totals(self, run_id: str) -> dict:
        row = self.db.execute(
            "SELECT COUNT(*), COALESCE(SUM(requests),0), COALESCE(SUM(retries),0), COALESCE(SUM(throttled),0), "
            "COALESCE(SUM(status='acknowledged'),0), COALESCE(SUM(in_doubt),0) FROM batches WHERE run_id=?",
            (run_id,),
        ).fetchone()
        keys = ("batches", "requests", "retries", "throttled", "acknowledged_batches", "in_doubt_batches")
        return dict(zip(keys, row))


def _run(row) -> Run:
    return Run(row[0], row[1], row[2], row[3], row[4], row[5], json.loads(row[7]), json.loads(row[8]) if row[8] else None)
