"""The ledger in PostgreSQL, for workers on several machines: the same tables and SQL as the SQLite ledger.

Chosen by a URL (`BRAZE_MIGRATE_LEDGER_URL=postgresql://user@host/db`); an optional `schema=` query
parameter puts the tables in that schema (created if missing). Claims lock their rows with
`FOR UPDATE SKIP LOCKED`, so concurrent claimers take disjoint blocks without waiting on each other.
The URL may hold a password: only its redacted form appears in reprs and errors.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql

from connectors.state.ledger_base import LedgerBase, LedgerUnavailable

SCHEMES = ("postgresql", "postgres")
_PLACEHOLDER = re.compile(r"\?")


def is_postgres_url(url: str) -> bool:
    return urlsplit(url).scheme in SCHEMES


def redact_url(url: str) -> str:
    """The URL with any password replaced by `***`."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = (parts.username or "") + ":***"
    return urlunsplit(parts._replace(netloc=f"{user}@{netloc[-1]}"))


def split_schema(url: str) -> tuple[str, str | None]:
    """(connection URL, schema): the `schema` query parameter is ours, not libpq's."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((v for k, v in query if k == "schema"), None)
    rest = urlencode([(k, v) for k, v in query if k != "schema"])
    return urlunsplit(parts._replace(query=rest)), schema or None


class PgLedger(LedgerBase):
    """One autocommit connection per instance; `reopen()` gives another (psycopg connections serialize
    their users, so a thread that must not wait on the event loop's queries gets its own)."""

    LEAST = "LEAST"
    GREATEST = "GREATEST"
    LOCK_ROWS = "FOR UPDATE SKIP LOCKED"
    REAL = "DOUBLE PRECISION"
    REMOTE = True

    def __init__(self, url: str, *, connect_timeout: float = 10, durable: bool = True, create: bool = True):
        self.url = url
        self.redacted = redact_url(url)
        conninfo, self.schema = split_schema(url)
        try:
            self.db = psycopg.connect(conninfo, autocommit=True, connect_timeout=connect_timeout)
        except psycopg.Error as exc:
            raise LedgerUnavailable(f"cannot connect to the ledger database {self.redacted}: "
                                    f"{_first_line(exc, url)}") from None
        self.durable = durable
        try:
            self._setup(create)
        except psycopg.Error as exc:
            self.db.close()
            raise LedgerUnavailable(f"cannot set up the ledger in {self.redacted}: {_first_line(exc, url)}") from None

    def __repr__(self) -> str:
        return f"PgLedger({self.redacted!r})"

    def _setup(self, create: bool) -> None:
        if not self.durable:
            self.db.execute("SET synchronous_commit TO off")
        if self.schema and create:
            self.db.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema)))
        if self.schema:
            self.db.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))
        if create:
            self._migrate(self.redacted)

    def close(self) -> None:
        self.db.close()

    def reopen(self, *, durable: bool = True) -> PgLedger:
        return PgLedger(self.url, durable=durable, create=False)

    def _execute(self, statement: str, params: tuple = ()):
        return self.db.execute(_PLACEHOLDER.sub("%s", statement), params)

    def _executemany(self, statement: str, rows: Iterable[tuple]) -> None:
        with self.db.cursor() as cur:
            cur.executemany(_PLACEHOLDER.sub("%s", statement), list(rows))

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        with self.db.transaction():
            yield

    def _tables(self) -> set[str]:
        rows = self.db.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")
        return {r[0] for r in rows.fetchall()}

    def _columns(self, table: str) -> set[str]:
        rows = self.db.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = "
                               "current_schema() AND table_name = %s", (table,))
        return {r[0] for r in rows.fetchall()}

    def _lock_schema(self) -> None:
        # Several workers may start at once on an empty database: one migrates, the others wait.
        self.db.execute("SELECT pg_advisory_xact_lock(hashtext('braze_migrate.ledger.schema'))")


def _first_line(exc: BaseException, url: str) -> str:
    """The driver's message, first line only, with the password cut out should it ever be quoted."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    password = urlsplit(url).password
    return text.replace(password, "***") if password else text
