"""A SQL dataset from PostgreSQL into the spool: ours (ADBC, Arrow batches) against the row-by-row path it
replaced and against the physical anchor, `COPY ... TO STDOUT` read by Polars, all in this run.

    python -m bench.sql_source [ROWS ...]

The table has 10 columns (text, numbers, timestamps, `text[]`, `jsonb`) and is made once per row count in the
schema `bench_sql` of BRAZE_MIGRATE_BENCH_PG (default the tests' database). Each reader runs in a fresh child
process, which reports its own wall time and peak RSS (`VmHWM`).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.data import ROOT

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
SCHEMA = "bench_sql"
COLUMNS = ("external_id, email, first_name, lifetime_value, orders_count, score, signup_at, last_seen, tags, "
           "prefs")


def bench_url() -> str:
    return os.environ.get("BRAZE_MIGRATE_BENCH_PG") or DEFAULT_URL


def ensure_table(rows: int) -> str:
    """The table of `rows` rows (made once, kept between runs)."""
    import psycopg

    table = f"{SCHEMA}.users_{rows}"
    with psycopg.connect(bench_url(), autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        exists = conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0]
        if exists is not None and conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == rows:
            return table
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.execute(f"""CREATE TABLE {table} AS SELECT
            lpad(i::text, 9, '0') AS external_id,
            'user' || i || '@example.com' AS email,
            (ARRAY['Ann', 'Bob', 'Cy', 'Dee', 'Eve'])[1 + i % 5] AS first_name,
            (i % 100000 * 0.37)::numeric(12, 2) AS lifetime_value,
            (i % 500)::integer AS orders_count,
            (i % 977) / 7.0::float8 AS score,
            timestamptz '2024-01-01' + i * interval '1 minute' AS signup_at,
            timestamp '2026-01-01' + (i % 86400) * interval '1 second' AS last_seen,
            ARRAY['tag' || (i % 7), 'tag' || (i % 11)] AS tags,
            jsonb_build_object('lang', (ARRAY['en', 'no', 'de'])[1 + i % 3], 'n', i % 13) AS prefs
            FROM generate_series(1, {rows}) i""")
        conn.execute(f"ANALYZE {table}")
    return table


CHILD = r"""
import io, sys, time
from pathlib import Path
import polars as pl
kind, table, work, url = sys.argv[1], sys.argv[2], Path(sys.argv[3]), sys.argv[4]
started = time.perf_counter()
if kind == "ours":
    from connectors.sources import open_source
    mapping = work / "warehouse.yaml"
    mapping.write_text(f"sql: {{connection_env: BENCH_URL}}\ndatasets:\n  users: {{query: SELECT * FROM {table}}}\n")
    ds = open_source(mapping, work_dir=work / "spool", environ={"BENCH_URL": url})["users"]
    rows = ds.frame.select(pl.len()).collect().item()
elif kind == "rowwise":
    from bench.sql_rowwise import spool
    rows = spool(url, f"SELECT * FROM {table}", work / "spool")
else:  # the anchor: COPY TO STDOUT, read by Polars
    import psycopg
    buf = io.BytesIO()
    with psycopg.connect(url) as conn, conn.cursor().copy(
            f"COPY (SELECT * FROM {table}) TO STDOUT (FORMAT csv, HEADER)") as copy:
        for chunk in copy:
            buf.write(chunk)
    buf.seek(0)
    rows = pl.read_csv(buf).height
seconds = time.perf_counter() - started
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")) * 1024
print(rows, seconds, peak)
"""


def run_child(kind: str, table: str) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"bench-sql-{kind}-"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    try:
        done = subprocess.run([sys.executable, "-c", CHILD, kind, table, str(work), bench_url()], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=1800, check=False)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if done.returncode != 0:
        raise RuntimeError(f"{kind} read of {table} failed: {done.stderr.strip().splitlines()[-1:]}")
    rows, seconds, peak = done.stdout.split()
    return {"rows": int(rows), "seconds": float(seconds), "peak_rss_bytes": int(peak)}


def sql_cases(rows: int = 1_000_000, big_rows: int = 5_000_000, rounds: int = 3) -> dict:
    """`rounds` interleaved runs of ours, the row-by-row path and the anchor at `rows` (medians), then ours at
    `big_rows` (memory flat)."""
    table = ensure_table(rows)
    runs: dict[str, list[dict]] = {"ours": [], "rowwise": [], "copy": []}
    for r in range(rounds):
        for kind, done in runs.items():
            if kind == "rowwise" and r > 0:
                continue  # one run: it is 10x slower than the others, and its spread does not change the verdict
            done.append(run_child(kind, table))
    median = {kind: statistics.median(run["seconds"] for run in done) for kind, done in runs.items()}
    big = run_child("ours", ensure_table(big_rows)) if big_rows else None
    ours_peak = statistics.median(run["peak_rss_bytes"] for run in runs["ours"])
    return {
        "rows": rows,
        "columns": len(COLUMNS.split(", ")),
        "seconds": median,
        "runs": runs,
        "speedup_over_rowwise": median["rowwise"] / median["ours"],
        "ours_over_copy": median["ours"] / median["copy"],
        "big": big,
        "big_rows": big_rows,
        "peak_rss_bytes": ours_peak,
        "big_over_small_peak": big["peak_rss_bytes"] / ours_peak if big else None,
    }


def main(argv: list[str] | None = None) -> int:
    args = [int(a) for a in (argv if argv is not None else sys.argv[1:])]
    print(json.dumps(sql_cases(*args), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
