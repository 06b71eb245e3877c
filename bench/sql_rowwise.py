"""The SQL reader this project used before ADBC, kept as the bench's baseline: rows through a psycopg
server-side cursor, `batch_size` at a time, into Python values, via `pl.read_database(..., iter_batches=True)`,
each batch written as a Parquet part (connectors/sql.py at commit 433fbc0, its reading path only)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import psycopg
from psycopg.types.numeric import FloatLoader
from psycopg.types.string import TextLoader


def spool(url: str, sql: str, folder: Path, batch_size: int = 10_000) -> int:
    """Read `sql` row by row into Parquet parts under `folder`; the number of rows."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = 0
    with psycopg.connect(url) as conn:
        conn.read_only = True
        for name in ("json", "jsonb", "uuid"):
            conn.adapters.register_loader(name, TextLoader)
        conn.adapters.register_loader("numeric", FloatLoader)
        conn.execute("SET timezone TO 'UTC'")
        cur = conn.cursor(name="bench_rowwise")
        batches = pl.read_database(sql, connection=cur, iter_batches=True, batch_size=batch_size)
        for i, frame in enumerate(batches):
            frame.write_parquet(folder / f"part-{i:05d}.parquet", compression="zstd")
            rows += frame.height
    return rows
