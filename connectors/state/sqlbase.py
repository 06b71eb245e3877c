"""What a ledger backend supplies: one SQL connection (statements with `?` placeholders, transactions) and its
dialect. Every statement the ledger runs is written in `connectors/state/` against this interface only.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from contextlib import AbstractContextManager


class LedgerUnavailable(Exception):
    """The ledger database cannot be reached or set up; the message names it without its password."""


class SqlBackend(ABC):
    """A connection and its SQL dialect: LEAST/GREATEST, row locking, the floating-point type, whether a
    statement is a round trip (`REMOTE`)."""

    LEAST = "MIN"
    GREATEST = "MAX"
    LOCK_ROWS = ""
    REAL = "REAL"
    REMOTE = False  # each statement is a network round trip (PostgreSQL), not an in-process call (SQLite)

    @abstractmethod
    def _execute(self, sql: str, params: tuple = ()):
        """Run one statement (`?` placeholders); returns a cursor."""

    @abstractmethod
    def _executemany(self, sql: str, rows: Iterable[tuple]) -> None: ...

    @abstractmethod
    def _transaction(self) -> AbstractContextManager[None]:
        """A write transaction: committed on exit, rolled back on an exception."""

    @abstractmethod
    def _tables(self) -> set[str]:
        """The names of the ledger's tables (in its schema, for PostgreSQL)."""

    @abstractmethod
    def _columns(self, table: str) -> set[str]:
        """The column names of one of the ledger's tables."""

    def _lock_schema(self) -> None:
        """Inside a transaction: keep other processes from migrating the schema at the same time."""
