"""The ledger's one schema: every table, its version and the in-place migrations from each earlier version.

`schema_version` holds one row per migration applied; the ledger's version is the highest. A ledger opened by
this release is brought to `VERSION` at once, in one transaction (a PostgreSQL schema under an advisory lock,
an SQLite file under `BEGIN IMMEDIATE`), so a state folder or PostgreSQL schema written by an earlier release
is upgraded in place and keeps every run, batch and outcome. A ledger written by a *later* release is refused.

Release 0.1.0 kept no version: its tables, created as each module first needed them, are version 1 (a ledger
without `schema_version` is version 0, and migration 1 creates whatever it lacks).

To change the schema, append a `Migration` (never edit one that shipped): new tables as `CREATE TABLE IF NOT
EXISTS`, new columns in `columns` (added only where missing), data moves as statements. `{real}` is the
backend's floating-point type.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from connectors.state.sqlbase import LedgerUnavailable, SqlBackend


@dataclass(frozen=True)
class Migration:
    version: int
    what: str
    statements: tuple[str, ...] = ()
    columns: tuple[tuple[str, str, str], ...] = ()  # (table, column, type): added where missing


RELEASE_0_1_0 = Migration(1, "the tables of release 0.1.0", (
    """CREATE TABLE IF NOT EXISTS runs (
        run_id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        source TEXT NOT NULL,
        source_fingerprint TEXT NOT NULL,
        status TEXT NOT NULL,            -- states.RunState
        created_at {real} NOT NULL,
        updated_at {real} NOT NULL,
        settings TEXT NOT NULL,
        summary TEXT
    )""",
    """CREATE TABLE IF NOT EXISTS batches (
        run_id TEXT NOT NULL,
        batch_no INTEGER NOT NULL,
        status TEXT NOT NULL,            -- states.BatchState
        has_events INTEGER NOT NULL,
        n_objects INTEGER NOT NULL,
        in_doubt INTEGER NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 0,
        requests INTEGER NOT NULL DEFAULT 0,
        retries INTEGER NOT NULL DEFAULT 0,
        throttled INTEGER NOT NULL DEFAULT 0,
        updated_at {real},
        owner TEXT,                      -- worker that claimed (then sent) the batch
        lease_until {real},              -- a claimed/sending batch is the owner's until then
        PRIMARY KEY (run_id, batch_no)
    )""",
    """CREATE INDEX IF NOT EXISTS batches_unfinished ON batches (run_id, batch_no)
        WHERE status IN ('planned', 'claimed', 'sending')""",
    """CREATE TABLE IF NOT EXISTS outcomes (
        run_id TEXT NOT NULL,
        batch_no INTEGER NOT NULL,
        "array" TEXT NOT NULL,
        idx INTEGER NOT NULL,
        outcome TEXT NOT NULL,           -- states.ObjectOutcome: rejected | pending
        reason TEXT,
        PRIMARY KEY (run_id, batch_no, "array", idx)
    )""",
    """CREATE TABLE IF NOT EXISTS workers (
        worker_id TEXT PRIMARY KEY,
        run_id TEXT NOT NULL,
        host TEXT NOT NULL,              -- host name and pid namespace: where `pid` means something
        pid INTEGER NOT NULL,
        started_at {real} NOT NULL,
        seen_at {real} NOT NULL,
        finished_at {real}
    )""",
    """CREATE TABLE IF NOT EXISTS budget (
        key TEXT PRIMARY KEY,            -- what the limit applies to, e.g. `users.track@rest.iad-01.braze.com`
        win BIGINT NOT NULL,             -- the current fixed window: floor(epoch seconds / period)
        cap INTEGER NOT NULL,            -- permits of that window (the lowest cap any worker asked for)
        used INTEGER NOT NULL,           -- permits leased in that window
        granted INTEGER NOT NULL         -- the last lease's grant (what RETURNING hands back)
    )""",
    """CREATE TABLE IF NOT EXISTS snapshot_files (
        name TEXT PRIMARY KEY,
        rows BIGINT,
        size BIGINT,
        sha256 TEXT,
        next_rows BIGINT,
        next_size BIGINT,
        next_sha256 TEXT,
        run_id TEXT,
        updated_at DOUBLE PRECISION
    )""",
    """CREATE TABLE IF NOT EXISTS settlements (
        run_id TEXT NOT NULL,
        batch_no INTEGER NOT NULL,
        decision TEXT NOT NULL,          -- delivered | resend
        decided_by TEXT NOT NULL,        -- person | check
        objects INTEGER NOT NULL,
        settled_at DOUBLE PRECISION NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS delete_batches (
        run_id TEXT NOT NULL, batch_no INTEGER NOT NULL,
        status TEXT NOT NULL,            -- states.DeleteState
        n_ids INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, requests INTEGER NOT NULL DEFAULT 0,
        throttled INTEGER NOT NULL DEFAULT 0, deleted INTEGER, reason TEXT, updated_at DOUBLE PRECISION,
        PRIMARY KEY (run_id, batch_no))""",
    # Acknowledged deletes, written with the batch's outcome; `committed` once the snapshot dropped the user.
    """CREATE TABLE IF NOT EXISTS deleted_users (
        external_id TEXT PRIMARY KEY, run_id TEXT NOT NULL, deleted_at DOUBLE PRECISION NOT NULL,
        committed INTEGER NOT NULL DEFAULT 0)""",
), columns=(("batches", "owner", "TEXT"), ("batches", "lease_until", "{real}")))  # both after the first release

CATALOGS = Migration(2, "catalog syncs: one row per catalog item request", (
    """CREATE TABLE IF NOT EXISTS catalog_batches (
        run_id TEXT NOT NULL, catalog TEXT NOT NULL, batch_no INTEGER NOT NULL,
        method TEXT NOT NULL,            -- POST | PATCH | DELETE
        status TEXT NOT NULL,            -- states.CatalogState
        n_items INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, requests INTEGER NOT NULL DEFAULT 0,
        throttled INTEGER NOT NULL DEFAULT 0, reason TEXT, committed INTEGER NOT NULL DEFAULT 0,
        updated_at DOUBLE PRECISION,
        PRIMARY KEY (run_id, catalog, batch_no))""",
))

TOMBSTONES_AND_PLAN_FILES = Migration(3, "lifted tombstones (undelete) and digests of committed plan files", (
    """CREATE TABLE IF NOT EXISTS undeletes (
        external_id TEXT NOT NULL, run_id TEXT, deleted_at DOUBLE PRECISION,
        undeleted_at DOUBLE PRECISION NOT NULL, by_whom TEXT NOT NULL)""",
    # What `repair` may replay of a committed run: path in its plan, size, SHA-256 (connectors/state/plan_digests.py).
    """CREATE TABLE IF NOT EXISTS plan_files (
        run_id TEXT NOT NULL, path TEXT NOT NULL, size BIGINT NOT NULL, sha256 TEXT NOT NULL,
        PRIMARY KEY (run_id, path))""",
))

IDENTITY_REQUESTS = Migration(4, "identity requests: identify, rename and remove of user identifiers", (
    """CREATE TABLE IF NOT EXISTS identity_batches (
        run_id TEXT NOT NULL, kind TEXT NOT NULL, batch_no INTEGER NOT NULL,
        status TEXT NOT NULL,            -- states.RequestState
        n_items INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, requests INTEGER NOT NULL DEFAULT 0,
        throttled INTEGER NOT NULL DEFAULT 0, reason TEXT, updated_at DOUBLE PRECISION,
        PRIMARY KEY (run_id, kind, batch_no))""",
    """CREATE TABLE IF NOT EXISTS identity_changes (
        kind TEXT NOT NULL, from_key TEXT NOT NULL, to_key TEXT NOT NULL, run_id TEXT NOT NULL,
        done_at DOUBLE PRECISION NOT NULL, committed INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (kind, from_key))""",
    """CREATE TABLE IF NOT EXISTS identity_items (
        run_id TEXT NOT NULL, kind TEXT NOT NULL, batch_no INTEGER NOT NULL, from_key TEXT NOT NULL,
        to_key TEXT NOT NULL, PRIMARY KEY (run_id, kind, from_key))""",
))

MIGRATIONS: tuple[Migration, ...] = (RELEASE_0_1_0, CATALOGS, TOMBSTONES_AND_PLAN_FILES, IDENTITY_REQUESTS)
VERSION = MIGRATIONS[-1].version
VERSION_TABLE = """CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER PRIMARY KEY, what TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)"""


def version_of(db: SqlBackend) -> int:
    """The ledger's schema version: 0 before any (release 0.1.0 or an empty database)."""
    if "schema_version" not in db._tables():
        return 0
    row = db._execute("SELECT MAX(version) FROM schema_version").fetchone()
    return int(row[0] or 0)


def upgrade(db: SqlBackend, name: str) -> int:
    """Bring the ledger to `VERSION` in place; returns the version it had. `name` names it in errors."""
    if version_of(db) == VERSION:
        return VERSION
    with db._transaction():
        db._lock_schema()
        found = version_of(db)  # again: another process may have migrated meanwhile
        if found > VERSION:
            raise LedgerUnavailable(f"the ledger {name} was written by a newer braze-migrate (schema version "
                                    f"{found}, this one knows up to {VERSION}): upgrade braze-migrate")
        db._execute(VERSION_TABLE)
        for migration in MIGRATIONS[found:]:
            _apply(db, migration)
        return found


def _apply(db: SqlBackend, migration: Migration) -> None:
    for statement in migration.statements:
        db._execute(_sql(statement, db))
    for table, column, kind in migration.columns:
        if column not in db._columns(table):
            db._execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind.format(real=db.REAL)}")
    db._execute("INSERT INTO schema_version (version, what, applied_at) VALUES (?,?,?)",
                (migration.version, migration.what, time.time()))


def _sql(statement: str, db: SqlBackend) -> str:
    """The statement for this backend, without comments (a `?` in one would read as a placeholder)."""
    text = "\n".join(line.split("--", 1)[0].rstrip() for line in statement.splitlines())
    return text.format(real=db.REAL)
