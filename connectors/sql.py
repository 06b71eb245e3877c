"""SQL sources: one query per dataset against a Postgres-compatible warehouse (PostgreSQL, Redshift).

Rows come through a psycopg server-side (named) cursor, `batch_size` at a time, via
`pl.read_database(..., iter_batches=True)`; each batch is written as one local Parquet part, so memory
holds one batch whatever the table size (`docs/sources.md` has the measurement). Every column gets a
fixed Polars type from the cursor description, so all parts agree even when a batch is all NULL:
integers → Int64, real/double/numeric → Float64, timestamptz → UTC Datetime (the session runs in UTC),
timestamp → naive Datetime (naive means UTC downstream), json/jsonb → their JSON text, arrays → lists;
any other type arrives as its text. Sessions are read-only. The connection URL is a secret: messages
show it with the password masked.
"""

from __future__ import annotations

import contextlib
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import polars as pl
import psycopg
from psycopg.types.numeric import FloatLoader
from psycopg.types.string import TextLoader

from connectors.errors import SourceError

CONNECT_TIMEOUT_S = 10

_SCALARS: dict[str, pl.DataType] = {
    "bool": pl.Boolean(),
    "int2": pl.Int64(),
    "int4": pl.Int64(),
    "int8": pl.Int64(),
    "oid": pl.Int64(),
    "float4": pl.Float64(),
    "float8": pl.Float64(),
    "numeric": pl.Float64(),
    "text": pl.String(),
    "varchar": pl.String(),
    "bpchar": pl.String(),
    "name": pl.String(),
    "json": pl.String(),
    "jsonb": pl.String(),
    "uuid": pl.String(),
    "date": pl.Date(),
    "timestamp": pl.Datetime("us"),
    "timestamptz": pl.Datetime("us", "UTC"),
    "time": pl.Time(),
    "bytea": pl.Binary(),
}
# What a query can raise while described or read: the server's errors and Polars' conversions.
_READ_ERRORS = (psycopg.Error, pl.exceptions.PolarsError, SourceError)
# Loaded as their text (json keeps its exact text; uuid as the usual string) or as a float (numeric).
_TEXT_LOADED = ("json", "jsonb", "uuid")


@dataclass(frozen=True)
class Query:
    """One dataset's query and where it runs. `url` holds the password: never print it, use `where`."""

    dataset: str
    sql: str
    url: str = field(repr=False)
    env_name: str
    batch_size: int
    mapping_file: str

    @property
    def where(self) -> str:
        return f"{mask(self.url)} (from {self.env_name})"


def mask(url: str) -> str:
    """The connection URL with its password (in the authority or as a parameter) replaced by ***."""
    masked = re.sub(r"(?i)(password\s*=\s*)('[^']*'|[^&\s]+)", r"\1***", url)
    parts = urlsplit(masked)
    if parts.password is None:
        return masked
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def describe(query: Query) -> pl.Schema:
    """The query's columns and their Polars types, without fetching a row (DECLARE, then describe)."""
    with _connect(query) as conn:
        cur = conn.cursor(name=f"braze_migrate_describe_{query.dataset}")
        try:
            cur.execute(query.sql)
            return pl.Schema(
                {name: dtype for name, (dtype, _) in _column_types(conn, cur.description).items()}
            )
        except _READ_ERRORS as exc:
            raise _query_error(query, exc) from None
        finally:
            _close_quietly(cur)


def spool(query: Query, folder: Path) -> list[Path]:
    """Run the query and write its rows to `folder` as Parquet parts of `batch_size` rows; return them.

    An empty result still leaves one (empty) part, so the dataset keeps its columns.
    """
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    parts: list[Path] = []
    with _connect(query) as conn:
        probe = conn.cursor(name=f"braze_migrate_probe_{query.dataset}")
        try:
            probe.execute(query.sql)
            description = list(probe.description or [])
            types = _column_types(conn, probe.description)
        except _READ_ERRORS as exc:
            raise _query_error(query, exc) from None
        finally:
            _close_quietly(probe)
        for col in description:
            if not types[col.name][1]:
                conn.adapters.register_loader(col.type_code, TextLoader)
        schema = pl.Schema({name: dtype for name, (dtype, _) in types.items()})
        cur = conn.cursor(name=f"braze_migrate_read_{query.dataset}")
        try:
            batches = pl.read_database(
                query.sql,
                connection=cur,
                iter_batches=True,
                batch_size=query.batch_size,
                schema_overrides=dict(schema),
            )
            for i, frame in enumerate(batches):
                parts.append(_write(frame, folder / f"part-{i:05d}.parquet"))
        except _READ_ERRORS as exc:
            raise _query_error(query, exc) from None
        finally:
            _close_quietly(cur)
    if not parts:
        parts.append(_write(pl.DataFrame(schema=schema), folder / "part-00000.parquet"))
    return parts


def _write(frame: pl.DataFrame, path: Path) -> Path:
    frame.write_parquet(path, compression="zstd")
    return path


def _connect(query: Query) -> psycopg.Connection:
    try:
        conn = psycopg.connect(query.url, connect_timeout=CONNECT_TIMEOUT_S, application_name="braze-migrate")
    except psycopg.Error as exc:
        raise SourceError(
            f"could not connect to {query.where} for dataset {query.dataset!r}: {_reason(exc, query)}: "
            f"check {query.env_name} (user, password, host, database)"
        ) from None
    conn.read_only = True
    for name in _TEXT_LOADED:
        conn.adapters.register_loader(name, TextLoader)
    conn.adapters.register_loader("numeric", FloatLoader)
    try:
        conn.execute("SET timezone TO 'UTC'")
    except psycopg.Error as exc:
        conn.close()
        raise _query_error(query, exc) from None
    return conn


def _column_types(conn, description) -> dict[str, tuple[pl.DataType, bool]]:
    """Column → (Polars type, whether psycopg loads it natively as that type)."""
    if description is None:
        raise SourceError("the query returns no rows (is it a SELECT?)")
    out: dict[str, tuple[pl.DataType, bool]] = {}
    for col in description:
        if col.name in out:
            raise SourceError(f"the query returns column {col.name!r} twice: give each column its own name")
        info = conn.adapters.types.get(col.type_code)
        if info is None:
            out[col.name] = (pl.String(), False)
        elif info.array_oid == col.type_code and info.name in _SCALARS:
            out[col.name] = (pl.List(_SCALARS[info.name]), True)
        elif info.oid == col.type_code and info.name in _SCALARS:
            out[col.name] = (_SCALARS[info.name], True)
        else:
            out[col.name] = (pl.String(), False)
    return out


def _query_error(query: Query, exc: BaseException) -> SourceError:
    if isinstance(exc, SourceError):
        return SourceError(f"dataset {query.dataset!r} (query in {query.mapping_file}): {exc}")
    return SourceError(
        f"dataset {query.dataset!r}: the query in {query.mapping_file} failed on {query.where}: "
        f"{_reason(exc, query)}"
    )


def _reason(exc: BaseException, query: Query) -> str:
    """The server's own words (the primary message), or libpq's last line; without the password."""
    diag = getattr(exc, "diag", None)
    text = getattr(diag, "message_primary", None) or ""
    if not text:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()] or [type(exc).__name__]
        # libpq puts the server's reason last ("... failed: FATAL:  password authentication failed ...").
        text = re.sub(r"^.*?FATAL:\s*", "", lines[-1]) if isinstance(exc, psycopg.Error) else lines[0]
    password = urlsplit(query.url).password
    if password:
        text = text.replace(password, "***")
    return mask(text)[:300]


def _close_quietly(cur) -> None:
    """Close a cursor after a failure without letting a second error hide the first."""
    with contextlib.suppress(psycopg.Error):
        cur.close()
