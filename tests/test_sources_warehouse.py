"""The same export as Parquet files, as PostgreSQL queries (through ADBC) and as DuckDB queries plans the same
requests: a warehouse source changes where rows come from, never what is sent."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import polars as pl
import pytest

from braze_migrate.plan.planner import build_plan, scan_batches
from connectors.sources import SourceError, iter_batches, open_source
from connectors.state.snapshot import Snapshot
from tests.exports import DAY1_EVENTS, DAY1_PURCHASES, DAY1_USERS
from tests.test_sql_source import postgres_tables

PG_TYPES = {pl.String: "text", pl.Boolean: "boolean", pl.Int64: "bigint", pl.Float64: "numeric(12, 2)",
            pl.Date: "date", pl.Datetime("us", "UTC"): "timestamptz", pl.List(pl.String): "text[]"}


def export_frames() -> dict[str, pl.DataFrame]:
    users = pl.DataFrame(DAY1_USERS).with_columns(
        tags=pl.Series([["a", "b"], [], None, ["c"], ["c", "d"]], dtype=pl.List(pl.String)))
    return {"users": users, "purchases": pl.DataFrame(DAY1_PURCHASES), "events": pl.DataFrame(DAY1_EVENTS)}


def pg_type(name: str, dtype: pl.DataType) -> str:
    return "jsonb" if name == "properties" else PG_TYPES[dtype]


@pytest.fixture
def pg(pg_server):
    yield from postgres_tables(pg_server)


def plan_of(source: Path, tmp_path: Path, label: str, environ: dict[str, str], monkeypatch) -> dict:
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    info = build_plan(str(source), Snapshot(tmp_path / f"state-{label}"), tmp_path / f"plan-{label}", batch_size=2,
                      batch_mode="combined", resend_in_doubt=False, users_per_partition=2)
    rejects = pl.read_parquet(info.directory / "rejects.parquet").drop("file", "row")
    return {
        "bodies": [json.loads(b) for b in scan_batches(info.directory, ["body"]).collect()["body"]],
        "read": info.stats["read"],
        "rejects": sorted(rejects.iter_rows(), key=repr),
        "objects": info.objects,
        "data_points": info.data_points,
    }


def test_postgres_and_duckdb_queries_plan_the_same_requests_as_the_same_data_in_parquet(
        pg_server, pg, tmp_path, monkeypatch):
    conn, t = pg
    frames = export_frames()
    files = tmp_path / "parquet"
    files.mkdir()
    for name, frame in frames.items():
        frame.write_parquet(files / f"{name}.parquet")

    duck = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(duck)) as db:
        for name in frames:
            db.execute(f"CREATE TABLE {name} AS SELECT * FROM read_parquet('{files / name}.parquet')")
    for name, frame in frames.items():
        columns = ", ".join(f'"{c}" {pg_type(c, d)}' for c, d in frame.schema.items())
        conn.execute(f"CREATE TABLE {t}_{name} ({columns})")
        with conn.cursor().copy(f"COPY {t}_{name} FROM STDIN") as copy:
            for row in frame.iter_rows():
                copy.write_row(row)

    def mapping(folder: str, env: str, table: str) -> Path:
        path = tmp_path / folder / "warehouse.yaml"
        path.parent.mkdir()
        queries = "".join(f"  {name}:\n    query: SELECT * FROM {table.format(name=name)}\n" for name in frames)
        path.write_text(f"sql: {{connection_env: {env}, batch_size: 2}}\ndatasets:\n{queries}")
        return path

    pg_mapping = mapping("pg", "WAREHOUSE_URL", f"{t}_{{name}}")
    duck_mapping = mapping("duck", "DUCK_URL", "{name}")
    expected = plan_of(files, tmp_path, "parquet", {}, monkeypatch)
    from_pg = plan_of(pg_mapping, tmp_path, "pg", {"WAREHOUSE_URL": pg_server}, monkeypatch)
    from_duck = plan_of(duck_mapping, tmp_path, "duck", {"DUCK_URL": f"duckdb://{duck}"}, monkeypatch)
    assert expected["bodies"] and expected["rejects"]
    assert from_pg == expected
    assert from_duck == expected


def test_a_duckdb_path_is_relative_to_the_mapping_file_and_its_errors_name_the_dataset(tmp_path):
    with duckdb.connect(str(tmp_path / "w.duckdb")) as db:
        db.execute("CREATE TABLE u AS SELECT '000' || i AS external_id, i::HUGEINT AS n, "
                   "{'a': i} AS s, uuid() AS id, i::DECIMAL(8, 2) AS d FROM range(1, 6) t(i)")
    path = tmp_path / "m.yaml"
    path.write_text("sql: {connection_env: DUCK_URL, batch_size: 2}\ndatasets:\n  users: {query: SELECT * FROM u}\n")
    ds = open_source(path, work_dir=tmp_path / "work", environ={"DUCK_URL": "duckdb:w.duckdb"})["users"]
    df = ds.frame.collect()
    assert df.schema["n"] == pl.Int64 and df.schema["d"] == pl.Float64 and df.schema["id"] == pl.String
    assert df["external_id"].to_list() == [f"000{i}" for i in range(1, 6)] and df["_row"].to_list() == [1, 2, 3, 4, 5]
    assert pl.concat(iter_batches(ds, 2)).equals(df)
    path.write_text("sql: {connection_env: DUCK_URL}\ndatasets:\n  users: {query: SELECT * FROM no_table}\n")
    with pytest.raises(SourceError) as err:
        open_source(path, work_dir=tmp_path / "work2", environ={"DUCK_URL": "duckdb:w.duckdb"})
    assert "dataset 'users'" in str(err.value) and "no_table" in str(err.value)
    with pytest.raises(SourceError, match="does not exist: check DUCK_URL"):
        open_source(path, work_dir=tmp_path / "work3", environ={"DUCK_URL": "duckdb:missing.duckdb"})


def test_a_warehouse_whose_driver_is_not_installed_says_which_extra_installs_it(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("sql: {connection_env: SF_URL}\ndatasets:\n  users: {query: SELECT 1 AS external_id}\n")
    try:
        import adbc_driver_snowflake  # noqa: F401
    except ImportError:
        with pytest.raises(SourceError, match=r"pip install 'braze-migrate\[snowflake\]'"):
            open_source(path, work_dir=tmp_path / "w", environ={"SF_URL": "snowflake://u:p@acct/db"})
    else:
        pytest.fail("this test checks the message of a machine without the snowflake extra")

