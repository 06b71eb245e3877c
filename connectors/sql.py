"""SQL sources: one query per dataset, read as Arrow record batches into local Parquet parts.

The connection URL says where a query runs, and so which driver reads it:

- `postgresql://...` (or `postgres://`): PostgreSQL, Redshift and other Postgres-protocol warehouses, through
  ADBC (`adbc-driver-postgresql`), which reads the result with `COPY ... TO STDOUT (FORMAT binary)` straight
  into Arrow columns;
- `duckdb:///path/to/file.duckdb` (or `duckdb:relative/path.duckdb`, from the mapping file's folder): a DuckDB
  database file, opened read-only;
- `snowflake://...` and `bigquery://...`: through their ADBC drivers, optional extras on the same code path
  (`pip install 'braze-migrate[snowflake]'`, `[bigquery]`; docs/sources.md).

Batches are written as Parquet parts of `batch_size` rows, so memory holds about one batch whatever the
size of the result. Every column gets a fixed Polars type, so all parts agree: integers → Int64,
real/double/numeric/decimal → Float64 (a decimal of scale 0 → Int64), timestamps with a time zone → UTC Datetime (sessions run in UTC),
without → naive Datetime (naive means UTC downstream), json/jsonb and uuid → their text, arrays → lists;
a PostgreSQL type the driver has no Arrow type for arrives as its text (cast by the server). Sessions are
read-only. The connection URL is a secret: messages show it with the password masked.
"""

from __future__ import annotations

import contextlib
import importlib
import re
import shutil
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import polars as pl
import pyarrow as pa

from connectors.errors import SourceError

CONNECT_TIMEOUT_S = 10
# Bytes of result the PostgreSQL driver hands over per Arrow batch (its default is 16 MB).
PG_BATCH_BYTES = 8 << 20
# Drivers by URL scheme: the module that connects, and the extra that installs it.
DRIVERS = {
    "postgresql": ("adbc_driver_postgresql", None),
    "postgres": ("adbc_driver_postgresql", None),
    "duckdb": ("duckdb", None),
    "snowflake": ("adbc_driver_snowflake", "snowflake"),
    "bigquery": ("adbc_driver_bigquery", "bigquery"),
}
# PostgreSQL types the server casts before the driver reads them: to text (the driver would hand over
# their binary wire format, or an extension type) or to double precision.
_PG_AS_FLOAT = {"numeric"}
# Types whose `::text` cast is their output text (others, such as inet, go through format('%s', ...)).
_PG_TEXT_CAST = {"json", "jsonb", "uuid"}
_PG_NATIVE = {
    "bool", "int2", "int4", "int8", "oid", "float4", "float8", "text", "varchar", "bpchar", "name", "date",
    "timestamp", "timestamptz", "time", "bytea",
}


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

    @property
    def scheme(self) -> str:
        return self.url.split(":", 1)[0].lower() if ":" in self.url else ""


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
    """The query's columns and their Polars types, without fetching a row."""
    with _session(query) as session:
        return session.schema


def spool(query: Query, folder: Path) -> list[Path]:
    """Run the query and write its rows to `folder` as Parquet parts of `batch_size` rows; return them.

    An empty result still leaves one (empty) part, so the dataset keeps its columns.
    """
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    parts: list[Path] = []
    with _session(query) as session:
        schema = session.schema
        held: list[pl.DataFrame] = []
        rows = 0
        try:
            for batch in session.batches():
                held.append(_typed(batch, schema))
                rows += batch.num_rows
                while rows >= query.batch_size:
                    whole = pl.concat(held, rechunk=False)
                    parts.append(_write(whole.head(query.batch_size), folder / f"part-{len(parts):05d}.parquet"))
                    rest = whole.slice(query.batch_size)
                    held, rows = [rest], rest.height
        except SourceError:
            raise
        except Exception as exc:  # noqa: BLE001 - each driver has its own error classes; the message names it
            raise _query_error(query, exc) from None
        if rows or not parts:
            frame = pl.concat(held, rechunk=False) if held else pl.DataFrame(schema=schema)
            parts.append(_write(frame, folder / f"part-{len(parts):05d}.parquet"))
    return parts


def _write(frame: pl.DataFrame, path: Path) -> Path:
    # lz4: work files, dropped with the plan; fast beats small
    frame.write_parquet(path, compression="lz4")
    return path


# --- sessions: one per driver family ---------------------------------------------------------------------


class _Session(ABC):
    """An open, read-only connection that knows the query's columns and reads its rows as Arrow batches."""

    schema: pl.Schema

    @abstractmethod
    def batches(self) -> Iterator[pa.RecordBatch]:
        """The query's rows, in bounded Arrow batches."""


@contextlib.contextmanager
def _session(query: Query) -> Iterator[_Session]:
    scheme = query.scheme
    if scheme not in DRIVERS:
        raise SourceError(
            f"dataset {query.dataset!r}: {query.env_name} is not a connection URL this tool reads "
            f"(postgresql://, duckdb://, snowflake://, bigquery://): check {query.env_name}"
        )
    if scheme == "duckdb":
        session: _Session = _DuckDB(query)
    elif scheme in ("postgresql", "postgres"):
        session = _Postgres(query)
    elif scheme == "bigquery":
        session = _BigQuery(query)
    else:
        session = _Adbc(query)
    try:
        yield session
    finally:
        session.close()


def _driver(query: Query):
    """The driver module for the query's URL scheme; an optional extra's says how to install it if absent."""
    module, extra = DRIVERS[query.scheme]
    if module == "duckdb":
        import duckdb

        return duckdb
    if module == "adbc_driver_postgresql":
        import adbc_driver_postgresql.dbapi

        return adbc_driver_postgresql.dbapi
    try:  # an optional extra (snowflake, bigquery): named by the URL, so imported by name
        return importlib.import_module(f"{module}.dbapi")
    except ImportError:
        install = f"pip install 'braze-migrate[{extra}]'" if extra else "pip install braze-migrate"
        raise SourceError(
            f"dataset {query.dataset!r}: reading {query.scheme}:// needs the {module} package: {install}"
        ) from None


class _Adbc(_Session):
    """An ADBC driver (Snowflake here; BigQuery and PostgreSQL below): connect, describe the query, read its
    Arrow batches."""

    def __init__(self, query: Query) -> None:
        self.query = query
        driver = _driver(query)
        try:
            self.conn = self._connect(driver)
        except Exception as exc:  # noqa: BLE001 - each driver has its own error classes
            raise _connect_error(query, exc) from None
        self.cur = self.conn.cursor()
        try:
            self._prepare()
            self.arrow_schema = self._arrow_schema()
            self.read_sql = self._read_sql(self.arrow_schema)
            if self.read_sql != query.sql:
                self.arrow_schema = self._arrow_schema(self.read_sql)
        except SourceError:
            self.close()
            raise
        except Exception as exc:  # noqa: BLE001 - each driver has its own error classes
            self.close()
            raise _query_error(query, exc) from None
        self.schema = _schema_of(query, self.arrow_schema)

    def _connect(self, driver):
        """Snowflake's driver takes its DSN without the scheme: `user:password@account/database/schema?...`."""
        return driver.connect(self.query.url.split("://", 1)[1], autocommit=True)

    def _prepare(self) -> None:
        """Session settings before the query runs."""

    def _arrow_schema(self, sql: str | None = None) -> pa.Schema:
        sql = sql or self.query.sql
        try:
            return self.cur.adbc_execute_schema(sql)
        except Exception as exc:
            if "NOT_IMPLEMENTED" not in str(exc).upper():
                raise
        self.cur.execute(f"SELECT * FROM ({sql}) AS braze_migrate_q LIMIT 0")
        return self.cur.fetch_arrow_table().schema

    def _read_sql(self, schema: pa.Schema) -> str:
        return self.query.sql

    def batches(self) -> Iterator[pa.RecordBatch]:
        self.cur.execute(self.read_sql)
        yield from self.cur.fetch_record_batch()

    def close(self) -> None:
        for thing in (getattr(self, "cur", None), getattr(self, "conn", None)):
            if thing is not None:
                with contextlib.suppress(Exception):
                    thing.close()


class _BigQuery(_Adbc):
    """BigQuery: `bigquery://PROJECT_ID`; credentials are Google's Application Default Credentials (for
    example GOOGLE_APPLICATION_CREDENTIALS naming a service account's key file)."""

    def _connect(self, driver):
        project = urlsplit(self.query.url).netloc or urlsplit(self.query.url).path.strip("/")
        return driver.connect(db_kwargs={"adbc.bigquery.sql.project_id": project}, autocommit=True)


class _Postgres(_Adbc):
    """PostgreSQL through ADBC (binary COPY into Arrow), read-only, in UTC. Columns the driver has no plain
    Arrow type for (numeric, json, uuid, inet, ...) are cast by the server in a wrapping SELECT."""

    def _connect(self, driver):
        parts = urlsplit(self.query.url)
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        params.setdefault("connect_timeout", str(CONNECT_TIMEOUT_S))
        params.setdefault("application_name", "braze-migrate")
        return driver.connect(urlunsplit(parts._replace(query=urlencode(params))), autocommit=True)

    def _prepare(self) -> None:
        self.cur.execute("SET default_transaction_read_only = on")
        self.cur.execute("SET timezone TO 'UTC'")
        self.cur.adbc_statement.set_options(**{"adbc.postgresql.batch_size_hint_bytes": str(PG_BATCH_BYTES)})

    def _read_sql(self, schema: pa.Schema) -> str:
        casts, changed = [], False
        for f in schema:
            typname = (f.metadata or {}).get(b"POSTGRESQL:type", b"").decode()
            array = typname.startswith("_")
            base = typname[1:] if array else typname
            if base in _PG_NATIVE:
                cast = ""
            elif base in _PG_AS_FLOAT:
                cast = "float8"
            else:
                cast = "text"
            name = _ident(f.name)
            if cast == "text" and not array and base not in _PG_TEXT_CAST:
                # The type's own output text (as psql shows it): `::text` is a different cast for some (inet).
                casts.append(f"CASE WHEN {name} IS NULL THEN NULL ELSE format('%s', {name}) END AS {name}")
            elif cast:
                casts.append(f"{name}::{cast}{'[]' if array else ''} AS {name}")
            else:
                casts.append(name)
            changed = changed or bool(cast)
        if not changed:
            return self.query.sql
        return f"SELECT {', '.join(casts)} FROM ({self.query.sql}) AS braze_migrate_q"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class _DuckDB(_Session):
    """A DuckDB database file, opened read-only, in UTC."""

    def __init__(self, query: Query) -> None:
        self.query = query
        duckdb = _driver(query)
        path = self.path()
        if not path.is_file():
            raise SourceError(
                f"dataset {query.dataset!r}: DuckDB database {path} (from {query.env_name}) does not exist: "
                f"check {query.env_name}"
            )
        try:
            self.conn = duckdb.connect(str(path), read_only=True)
            self.conn.execute("SET TimeZone = 'UTC'")
            self.relation = self.conn.sql(query.sql)
            if self.relation is None:
                raise SourceError("the query returns no rows (is it a SELECT?)")
            self.schema = _schema_of(query, self.relation.limit(0).to_arrow_table().schema)
        except SourceError as exc:
            self.close()
            raise _query_error(query, exc) from None
        except Exception as exc:  # noqa: BLE001 - each driver has its own error classes
            self.close()
            raise _query_error(query, exc) from None

    def path(self) -> Path:
        rest = self.query.url.split(":", 1)[1]
        rest = rest.removeprefix("//")  # duckdb:///abs/file or duckdb:rel/file
        path = Path(rest)
        return path if path.is_absolute() else Path(self.query.mapping_file).parent / path

    def batches(self) -> Iterator[pa.RecordBatch]:
        yield from self.relation.to_arrow_reader(self.query.batch_size)

    def close(self) -> None:
        conn = getattr(self, "conn", None)
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()


# --- types ---------------------------------------------------------------------------------------------


def _schema_of(query: Query, schema: pa.Schema) -> pl.Schema:
    names = [f.name for f in schema]
    twice = next((n for n in names if names.count(n) > 1), None)
    if twice is not None:
        raise _query_error(
            query, SourceError(f"the query returns column {twice!r} twice: give each column its own name")
        )
    empty = pl.from_arrow(_plain(schema).empty_table())
    assert isinstance(empty, pl.DataFrame)
    return pl.Schema({name: _fixed(dtype) for name, dtype in empty.schema.items()})


def _plain(schema: pa.Schema) -> pa.Schema:
    """Extension types (a driver's json, uuid) as their storage."""
    return pa.schema([pa.field(f.name, _storage(f.type)) for f in schema])


def _storage(t: pa.DataType) -> pa.DataType:
    return t.storage_type if isinstance(t, pa.ExtensionType) else t


def _fixed(dtype: pl.DataType) -> pl.DataType:
    """The one Polars type a column of this type gets in every part."""
    if dtype.is_integer() or (isinstance(dtype, pl.Decimal) and dtype.scale == 0):  # NUMBER(38, 0), HUGEINT
        return pl.Int64()
    if dtype.is_float() or dtype.is_decimal():
        return pl.Float64()
    if isinstance(dtype, pl.Datetime):
        return pl.Datetime("us", "UTC" if dtype.time_zone else None)
    if isinstance(dtype, pl.List | pl.Array):
        return pl.List(_fixed(dtype.inner))
    if isinstance(dtype, pl.Struct):
        return pl.Struct({f.name: _fixed(f.dtype) for f in dtype.fields})
    if isinstance(dtype, pl.Categorical | pl.Enum | pl.Null):
        return pl.String()
    return dtype


def _typed(batch: pa.RecordBatch, schema: pl.Schema) -> pl.DataFrame:
    """An Arrow batch as a Polars frame of the fixed types."""
    columns = [c.storage if isinstance(c.type, pa.ExtensionType) else c for c in batch.columns]
    frame = pl.from_arrow(pa.RecordBatch.from_arrays(columns, names=batch.schema.names), rechunk=False)
    assert isinstance(frame, pl.DataFrame)
    return frame.cast(dict(schema))  # type: ignore[arg-type]


# --- messages ------------------------------------------------------------------------------------------


def _connect_error(query: Query, exc: BaseException) -> SourceError:
    return SourceError(
        f"could not connect to {query.where} for dataset {query.dataset!r}: {_reason(exc, query)}: "
        f"check {query.env_name} (user, password, host, database)"
    )


def _query_error(query: Query, exc: BaseException) -> SourceError:
    if isinstance(exc, SourceError):
        return SourceError(f"dataset {query.dataset!r} (query in {query.mapping_file}): {exc}")
    return SourceError(
        f"dataset {query.dataset!r}: the query in {query.mapping_file} failed on {query.where}: "
        f"{_reason(exc, query)}"
    )


def _reason(exc: BaseException, query: Query) -> str:
    """The server's own words (its primary message), without the password or the query's text."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()] or [type(exc).__name__]
    text = next((ln for ln in lines if re.search(r"\b(ERROR|FATAL):", ln)), lines[0])
    text = re.sub(r"^.*?\b(ERROR|FATAL):\s*", "", text)  # libpq: "... failed: FATAL:  password authentication"
    text = re.sub(r"^\[[^\]]*\]\s*", "", text)
    password = urlsplit(query.url).password
    if password:
        text = text.replace(password, "***")
    return mask(text)[:300]
