"""The SQLite ledger in the state folder (one machine, several processes); the interface and the SQL it
runs are `connectors.state.ledger_base`, re-exported here for callers that name them from this module."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from connectors.state.ledger_base import (  # noqa: F401 - re-exported
    ADDED_BATCH_COLUMNS,
    LEASE_SECONDS,
    OPEN_STATUSES,
    SCHEMA,
    UNFINISHED_BATCHES,
    Claim,
    LedgerBase,
    LedgerUnavailable,
    Run,
)


class Ledger(LedgerBase):
    """The SQLite ledger in the state folder: one connection per process, WAL for crash safety, and
    `BEGIN IMMEDIATE` so that claims of several processes on one machine never interleave."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a killed process (the case we test); only power loss may drop the tail.
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA.format(real="REAL"))
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(batches)")}
        for name, kind in ADDED_BATCH_COLUMNS.items():
            if name not in columns:
                self.db.execute(f"ALTER TABLE batches ADD COLUMN {name} {kind.format(real='REAL')}")

    def __repr__(self) -> str:
        return f"Ledger({str(self.path)!r})"

    def close(self) -> None:
        self.db.close()

    def reopen(self, *, durable: bool = True) -> Ledger:
        return Ledger(self.path)

    def _execute(self, sql: str, params: tuple = ()):
        return self.db.execute(sql, params)

    def _executemany(self, sql: str, rows: Iterable[tuple]) -> None:
        self.db.executemany(sql, rows)

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")
