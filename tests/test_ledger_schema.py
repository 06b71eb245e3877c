"""The ledger's one versioned schema (connectors/state/schema.py): created at the current version, an older
ledger (release 0.1.0's, or one from before it) upgraded in place with its data kept, a newer one refused; on
SQLite and on PostgreSQL."""

from __future__ import annotations

import sqlite3
import tarfile
import uuid
from pathlib import Path

import psycopg
import pytest

from connectors.state.ledger import Ledger, LedgerUnavailable
from connectors.state.ledger_pg import PgLedger
from connectors.state.schema import MIGRATIONS, VERSION, version_of

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "state-0.1.0.tar.gz"
TABLES = {"runs", "batches", "outcomes", "workers", "budget", "snapshot_files", "settlements", "delete_batches",
          "deleted_users", "catalog_batches", "schema_version"}


def release_0_1_0_ledger(tmp_path: Path) -> Path:
    with tarfile.open(FIXTURE) as tar:
        tar.extract("state-0.1.0/ledger.sqlite", tmp_path, filter="data")
    return tmp_path / "state-0.1.0" / "ledger.sqlite"


@pytest.fixture
def pg_url(pg_server):
    schema = f"bm_test_{uuid.uuid4().hex[:10]}"
    yield f"{pg_server}?schema={schema}", pg_server, schema
    with psycopg.connect(pg_server, autocommit=True) as con:
        con.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_versions_are_numbered_one_by_one():
    assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1)) and VERSION == len(MIGRATIONS)


def test_a_new_ledger_has_every_table_at_the_current_version(tmp_path):
    led = Ledger(tmp_path / "ledger.sqlite")
    try:
        assert version_of(led) == VERSION and TABLES <= led._tables()
    finally:
        led.close()


def test_the_previous_release_ledger_is_upgraded_in_place_and_keeps_its_runs(tmp_path):
    path = release_0_1_0_ledger(tmp_path)
    with sqlite3.connect(path) as db:
        before = db.execute("SELECT run_id, status FROM runs").fetchall()
        batches = db.execute("SELECT COUNT(*) FROM batches WHERE status='acknowledged'").fetchone()[0]
        assert "schema_version" not in {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
    led = Ledger(path)
    try:
        assert version_of(led) == VERSION and TABLES <= led._tables()
        assert [(r.run_id, r.status) for r in led.runs()] == before and before[0][1] == "committed"
        assert led.totals(before[0][0])["acknowledged_batches"] == batches > 0
        assert led.unfinished_run() is None
    finally:
        led.close()
    Ledger(path).close()  # opening again finds it current


def test_a_ledger_from_before_the_first_release_gets_the_claim_columns(tmp_path):
    path = tmp_path / "ledger.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE batches (run_id TEXT NOT NULL, batch_no INTEGER NOT NULL, status TEXT NOT NULL, "
                   "has_events INTEGER NOT NULL, n_objects INTEGER NOT NULL, in_doubt INTEGER NOT NULL DEFAULT 0, "
                   "attempts INTEGER NOT NULL DEFAULT 0, requests INTEGER NOT NULL DEFAULT 0, retries INTEGER NOT NULL "
                   "DEFAULT 0, throttled INTEGER NOT NULL DEFAULT 0, updated_at REAL, PRIMARY KEY (run_id, batch_no))")
        db.execute("INSERT INTO batches (run_id, batch_no, status, has_events, n_objects) VALUES ('r', 0, 'planned', 0, 1)")
    led = Ledger(path)
    try:
        assert {"owner", "lease_until"} <= led._columns("batches")
        assert led.batch_statuses("r") == {0: "planned"}
    finally:
        led.close()


def test_a_ledger_written_by_a_newer_release_is_refused(tmp_path):
    path = tmp_path / "ledger.sqlite"
    Ledger(path).close()
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO schema_version VALUES (?, 'from the future', 0)", (VERSION + 1,))
    with pytest.raises(LedgerUnavailable, match=f"schema version {VERSION + 1}.*upgrade braze-migrate"):
        Ledger(path)


def test_a_previous_release_postgresql_schema_is_upgraded_in_place(tmp_path, pg_url):
    url, server, schema = pg_url
    old = sqlite3.connect(release_0_1_0_ledger(tmp_path))
    with psycopg.connect(server, autocommit=True) as con:
        con.execute(f'CREATE SCHEMA "{schema}"')
        con.execute(f'SET search_path TO "{schema}"')
        for (ddl,) in old.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL"):
            con.execute("\n".join(line.split("--")[0] for line in ddl.splitlines()).replace(" REAL", " DOUBLE PRECISION"))
        for table in ("runs", "batches"):
            rows = old.execute(f"SELECT * FROM {table}").fetchall()
            with con.cursor() as cur:
                cur.executemany(f"INSERT INTO {table} VALUES ({','.join(['%s'] * len(rows[0]))})", rows)
    runs = [r[0] for r in old.execute("SELECT run_id FROM runs")]
    led = PgLedger(url)
    try:
        assert version_of(led) == VERSION and TABLES <= led._tables()
        assert [r.run_id for r in led.runs()] == runs and led.unfinished_run() is None
        assert led.totals(runs[0])["acknowledged_batches"] > 0
    finally:
        led.close()
