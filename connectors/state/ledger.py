"""The SQLite ledger in the state folder (one machine, several processes); the interface and the SQL it
runs are `connectors.state.ledger_base`, re-exported here for callers that name them from this module."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from connectors.state.ledger_base import (  # noqa: F401 - re-exported
    LEASE_SECONDS,
    OPEN_STATUSES,
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
        self._migrate(str(path))

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

    def _tables(self) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}

    def _columns(self, table: str) -> set[str]:
        return {row[1] for row in self.db.execute(f"PRAGMA table_info({table})")}

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")
