"""SQL sources against the PostgreSQL on this machine: types, batches, spooling, errors, bounded memory."""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import threading
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from urllib.parse import urlsplit

import polars as pl
import psycopg
import pytest

from connectors.sources import SourceError, open_source, source_fingerprint
from connectors.sql import Query, mask

REPO = Path(__file__).resolve().parents[1]


def postgres_tables(url: str):
    """An autocommit connection to the test database and a unique table prefix; its tables are dropped."""
    prefix = f"t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(url, autocommit=True) as conn:
        yield conn, prefix
        names = conn.execute(
            "SELECT tablename FROM pg_tables WHERE tablename LIKE %s", (prefix + "%",)
        ).fetchall()
        for (name,) in names:
            conn.execute(f'DROP TABLE IF EXISTS "{name}"')


@pytest.fixture
def pg(pg_server):
    yield from postgres_tables(pg_server)


def write_mapping(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "warehouse.yaml"
    path.write_text(text)
    return path


def one_query(tmp_path: Path, query: str, *, batch_size: int | None = None, extra: str = "") -> Path:
    batch = f", batch_size: {batch_size}" if batch_size else ""
    return write_mapping(
        tmp_path,
        f"sql: {{connection_env: WAREHOUSE_URL{batch}}}\n"
        f"datasets:\n  users:\n    query: {json.dumps(query)}\n{extra}",
    )


def test_postgres_types_arrive_as_fixed_polars_types(pg_server, pg, tmp_path):
    conn, t = pg
    conn.execute(f"""CREATE TABLE {t}_u (external_id text, amount numeric(12,2), ratio real, n integer,
        big bigint, vip boolean, seen timestamptz, local_ts timestamp, born date, tags text[], scores int[],
        prefs jsonb, uid uuid, ip inet, code char(3))""")
    conn.execute(f"""INSERT INTO {t}_u VALUES ('000123', 12.50, 0.5, 7, 9000000000, true,
        '2026-11-20 10:00:00+02', '2026-11-20 10:00:00', '1990-05-01', ARRAY['a','b'], ARRAY[1,2],
        '{{"k": 1}}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '10.0.0.1', 'ab'),
        ('000124', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)""")
    mapping = one_query(tmp_path, f"SELECT * FROM {t}_u ORDER BY external_id")
    ds = open_source(mapping, work_dir=tmp_path / "work", environ={"WAREHOUSE_URL": pg_server})["users"]
    df = ds.frame.collect()
    assert dict(df.schema) == {
        "external_id": pl.String,
        "amount": pl.Float64,
        "ratio": pl.Float64,
        "n": pl.Int64,
        "big": pl.Int64,
        "vip": pl.Boolean,
        "seen": pl.Datetime("us", "UTC"),
        "local_ts": pl.Datetime("us"),
        "born": pl.Date,
        "tags": pl.List(pl.String),
        "scores": pl.List(pl.Int64),
        "prefs": pl.String,
        "uid": pl.String,
        "ip": pl.String,
        "code": pl.String,
        "_file": pl.String,
        "_row": pl.Int64,
    }
    first = df.row(0, named=True)
    assert first["amount"] == 12.5 and first["big"] == 9_000_000_000 and first["born"] == date(1990, 5, 1)
    assert first["seen"] == datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
    assert first["local_ts"] == datetime(2026, 11, 20, 10, 0)
    assert (
        first["tags"] == ["a", "b"] and first["scores"] == [1, 2] and json.loads(first["prefs"]) == {"k": 1}
    )
    assert first["uid"] == "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11" and first["ip"] == "10.0.0.1"
    assert df.row(1, named=True)["amount"] is None
    assert ds.format == "parquet" and ds.files == ["sql:users"]


def test_rows_are_fetched_in_batches_spooled_as_parts_and_numbered_in_query_order(pg_server, pg, tmp_path):
    conn, t = pg
    conn.execute(
        f"CREATE TABLE {t}_u AS SELECT lpad(i::text, 6, '0') AS external_id, "
        f"CASE WHEN i > 1000 THEN i END AS late FROM generate_series(1, 2500) i"
    )
    mapping = one_query(tmp_path, f"SELECT * FROM {t}_u ORDER BY external_id DESC;", batch_size=1000)
    ds = open_source(mapping, work_dir=tmp_path / "work", environ={"WAREHOUSE_URL": pg_server})["users"]
    parts = sorted((tmp_path / "work" / "sql" / "users").glob("*.parquet"))
    assert [p.name for p in parts] == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    # The last batch is all NULL in `late`: its part keeps the column's type all the same.
    assert {str(pl.read_parquet_schema(p)["late"]) for p in parts} == {"Int64"}
    df = ds.frame.collect()
    assert df["_row"].to_list() == list(range(1, 2501))
    assert df["external_id"][0] == "002500" and df["external_id"][-1] == "000001"
    assert df["_file"].unique().to_list() == ["sql:users"]


def test_an_empty_result_keeps_its_columns(pg_server, pg, tmp_path):
    conn, t = pg
    conn.execute(f"CREATE TABLE {t}_u (external_id text, score int)")
    mapping = one_query(tmp_path, f"SELECT * FROM {t}_u")
    df = open_source(mapping, work_dir=tmp_path / "work", environ={"WAREHOUSE_URL": pg_server})[
        "users"
    ].frame.collect()
    assert df.height == 0 and df.schema["score"] == pl.Int64


def test_the_mapping_renames_types_and_skips_columns_of_a_query(pg_server, pg, tmp_path):
    conn, t = pg
    conn.execute(
        f"""CREATE TABLE {t}_u ("CUSTOMER_ID" text, "ZIP" integer, "PREFS" jsonb, "LOADED_AT" timestamptz)"""
    )
    conn.execute(
        f"""INSERT INTO {t}_u VALUES ('000001', 150, '{{"since": "2024-08-20 00:00:00", "n": 2}}', now())"""
    )
    extra = (
        "    columns: {external_id: CUSTOMER_ID}\n    column_case: lower\n    skip: [LOADED_AT]\n"
        "    types: {ZIP: string, prefs: {since: datetime, n: int}}\n"
    )
    mapping = one_query(tmp_path, f"SELECT * FROM {t}_u", extra=extra)
    ds = open_source(mapping, work_dir=tmp_path / "work", environ={"WAREHOUSE_URL": pg_server})["users"]
    df = ds.frame.collect()
    assert df.columns == ["external_id", "zip", "prefs", "_file", "_row"]
    assert df["zip"].to_list() == ["150"]
    assert df["prefs"].to_list() == [{"since": datetime(2024, 8, 20, tzinfo=UTC), "n": 2}]
    assert ds.typed == ("zip", "prefs")


def test_a_failing_query_names_the_dataset_and_the_mapping_file_before_anything_is_spooled(
    pg_server, pg, tmp_path
):
    mapping = one_query(tmp_path, "SELECT * FROM no_such_table_here")
    with pytest.raises(SourceError) as err:
        open_source(mapping, work_dir=tmp_path / "work", environ={"WAREHOUSE_URL": pg_server})
    message = str(err.value)
    assert "dataset 'users'" in message and str(mapping) in message
    assert 'relation "no_such_table_here" does not exist' in message
    assert not (tmp_path / "work").exists()


def test_a_query_that_writes_is_refused(pg_server, pg, tmp_path):
    conn, t = pg
    conn.execute(f"CREATE TABLE {t}_u (external_id text)")
    conn.execute(f"INSERT INTO {t}_u VALUES ('1')")
    mapping = one_query(tmp_path, f"DELETE FROM {t}_u RETURNING external_id")
    with pytest.raises(SourceError, match="dataset 'users'"):
        open_source(mapping, work_dir=tmp_path / "work", environ={"WAREHOUSE_URL": pg_server})
    assert conn.execute(f"SELECT count(*) FROM {t}_u").fetchone()[0] == 1


def test_an_unset_connection_variable_fails_before_connecting(tmp_path):
    mapping = one_query(tmp_path, "SELECT 1 AS external_id")
    with pytest.raises(SourceError) as err:
        open_source(mapping, work_dir=tmp_path / "work", environ={})
    assert "WAREHOUSE_URL is not set" in str(err.value) and str(mapping) in str(err.value)
    assert "line 1" in str(err.value)


class PasswordRefusingServer:
    """Just enough of the PostgreSQL wire protocol to ask for a password and refuse it, as a server with
    password authentication does (this machine's PostgreSQL trusts every local connection)."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.passwords: list[str] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                self._refuse(conn)

    def _refuse(self, conn):
        while True:
            length = struct.unpack("!I", _read(conn, 4))[0]
            code = struct.unpack("!I", _read(conn, length - 4)[:4])[0]
            if code in (80877103, 80877104):  # SSLRequest, GSSENCRequest: not offered
                conn.sendall(b"N")
                continue
            break
        conn.sendall(b"R" + struct.pack("!II", 8, 3))  # AuthenticationCleartextPassword
        assert _read(conn, 1) == b"p"
        body = _read(conn, struct.unpack("!I", _read(conn, 4))[0] - 4)
        self.passwords.append(body.rstrip(b"\0").decode())
        fields = b"".join(
            k + v.encode() + b"\0"
            for k, v in (
                (b"S", "FATAL"),
                (b"V", "FATAL"),
                (b"C", "28P01"),
                (b"M", 'password authentication failed for user "loader"'),
            )
        )
        conn.sendall(b"E" + struct.pack("!I", 4 + len(fields) + 1) + fields + b"\0")

    def close(self):
        self.sock.close()


def _read(conn, n):
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionError("client went away")
        data += chunk
    return data


def test_a_wrong_password_fails_naming_the_uri_with_the_password_masked(tmp_path):
    server = PasswordRefusingServer()
    try:
        url = f"postgresql://loader:Wr0ng-s3cret@127.0.0.1:{server.port}/warehouse"
        mapping = one_query(tmp_path, "SELECT 1 AS external_id")
        with pytest.raises(SourceError) as err:
            open_source(mapping, work_dir=tmp_path / "work", environ={"WAREHOUSE_URL": url})
    finally:
        server.close()
    message = str(err.value)
    assert server.passwords == ["Wr0ng-s3cret"]  # the URL's password was the one offered
    assert f"postgresql://loader:***@127.0.0.1:{server.port}/warehouse (from WAREHOUSE_URL)" in message
    assert "password authentication failed" in message
    assert "Wr0ng-s3cret" not in message and err.value.__cause__ is None


def test_a_connection_refused_by_the_real_server_masks_the_password(pg_server, tmp_path):
    pg_url = urlsplit(pg_server)
    url = (
        f"postgresql://{pg_url.username}:S3cret-value@{pg_url.hostname}:{pg_url.port or 5432}"
        f"/no_such_database_{uuid.uuid4().hex[:6]}"
    )
    mapping = one_query(tmp_path, "SELECT 1 AS external_id")
    with pytest.raises(SourceError) as err:
        open_source(mapping, work_dir=tmp_path / "work", environ={"WAREHOUSE_URL": url})
    assert "S3cret-value" not in str(err.value) and ":***@" in str(err.value)
    assert "does not exist" in str(err.value)


def test_mask_hides_passwords_in_urls_and_parameters():
    assert (
        mask("postgresql://u:p%40ss@h:5432/db?sslmode=require")
        == "postgresql://u:***@h:5432/db?sslmode=require"
    )
    assert mask("postgresql://h/db?user=u&password=hunter2") == "postgresql://h/db?user=u&password=***"
    assert mask("host=h password='a b' dbname=d") == "host=h password=*** dbname=d"
    assert mask("postgresql://u@h/db") == "postgresql://u@h/db"
    query = Query("users", "SELECT 1", "postgresql://u:hunter2@h/db", "WAREHOUSE_URL", 10, "m.yaml")
    assert "hunter2" not in repr(query) and query.where == "postgresql://u:***@h/db (from WAREHOUSE_URL)"


def test_the_fingerprint_of_a_sql_source_is_its_queries_and_mapping_without_connecting(tmp_path):
    unreachable = {"WAREHOUSE_URL": "postgresql://u:pw@127.0.0.1:1/db"}
    mapping = one_query(tmp_path, "SELECT 1 AS external_id")
    first = source_fingerprint(mapping, environ=unreachable)
    assert source_fingerprint(mapping, environ=unreachable) == first
    one_query(tmp_path, "SELECT 2 AS external_id")
    assert source_fingerprint(mapping, environ=unreachable) != first


MEMORY_CHILD = """
import sys, time
from pathlib import Path
import polars as pl
from connectors.sources import open_source
mapping, work, rows = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
started = time.monotonic()
if rows:
    ds = open_source(mapping, work_dir=work, environ={"WAREHOUSE_URL": sys.argv[4]})["users"]
    assert ds.frame.select(pl.len()).collect().item() == rows
else:  # the baseline: the same libraries loaded and one connection made, no row read
    import pyarrow
    import adbc_driver_postgresql.dbapi as driver
    driver.connect(sys.argv[4]).close()
# VmHWM is this process's own peak: ru_maxrss would carry the forking test process's peak across exec.
peak_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(peak_kb // 1024, round(time.monotonic() - started, 1))
"""


def peak_rss_mb(mapping: Path, work: Path, rows: int, url: str) -> tuple[int, float]:
    out = subprocess.run(
        [sys.executable, "-c", MEMORY_CHILD, str(mapping), str(work), str(rows), url],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return int(out[0]), float(out[1])


def test_memory_stays_flat_from_100k_to_1m_rows(pg_server, pg, tmp_path):
    conn, t = pg
    conn.execute(f"""CREATE TABLE {t}_u AS SELECT lpad(i::text, 8, '0') AS external_id,
        'user' || i || '@example.com' AS email, (i * 0.37)::numeric(12, 2) AS lifetime_value,
        i % 500 AS orders_count, i % 3 = 0 AS vip,
        timestamptz '2024-01-01' + i * interval '1 minute' AS signup_at
        FROM generate_series(1, 1000000) i""")
    small = one_query(
        tmp_path / "small", f"SELECT * FROM {t}_u WHERE external_id <= '00100000' ORDER BY external_id"
    )
    large = one_query(tmp_path / "large", f"SELECT * FROM {t}_u ORDER BY external_id")
    baseline, _ = peak_rss_mb(small, tmp_path / "w0", 0, pg_server)
    at_100k, _ = peak_rss_mb(small, tmp_path / "w1", 100_000, pg_server)
    at_1m, seconds = peak_rss_mb(large, tmp_path / "w2", 1_000_000, pg_server)
    print(f"peak RSS: baseline {baseline} MB, 100k rows {at_100k} MB, 1M rows {at_1m} MB ({seconds} s)")
    assert at_1m - at_100k < 40, (baseline, at_100k, at_1m)
    assert at_1m - baseline < 150, (baseline, at_100k, at_1m)
