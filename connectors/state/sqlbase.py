"""What a ledger backend supplies: one SQL connection (statements with `?` placeholders, transactions) and its
dialect. Every statement the ledger runs is written in `connectors/state/` against this interface only.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from contextlib import AbstractContextManager
from enum import StrEnum

from connectors.states import check, sources


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

    def _move(self, table: str, new: StrEnum, sets: str, set_params: tuple, where: str, where_params: tuple) -> int:
        """`UPDATE table SET status=new, <sets> WHERE <where>`, only for rows whose state may move to `new`
        (states.TRANSITIONS); a row in a state that may not raises `IllegalTransition`, and nothing is written.
        Returns the rows moved."""
        legal = sources(new)
        cur = self._execute(
            f"UPDATE {table} SET status=?{', ' + sets if sets else ''} WHERE {where} "
            f"AND status IN ({','.join('?' * len(legal))})",
            (str(new), *set_params, *where_params, *legal),
        )
        if cur.rowcount:
            return cur.rowcount
        for (old,) in self._execute(f"SELECT status FROM {table} WHERE {where}", where_params).fetchall():
            check(old, new)
        return 0
