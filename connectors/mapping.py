"""The mapping file of a source: where each dataset is, how its columns map onto the export contract.

A warehouse names its columns its own way (`CUSTOMER_ID`, `EMAIL_ADDRESS`) and keeps its data in object
stores or tables; the mapping file says, per dataset, where to find it (a path, URI or glob, or a SQL query
with its connection given by an environment variable's *name*), which export column is which contract
column, the types of text columns, and which columns to leave out. It is checked in two steps, both before
anything is read in full or sent: `load_mapping` checks the file itself (unknown options, datasets and
types, with the closest valid name suggested); `check_columns` checks it against each dataset's columns.
Every problem names the file, its line and the column. Secrets never sit in the file and never appear in
a message: the file holds environment variable names, and values given for unknown options are not echoed.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Mapping as MappingABC
from pathlib import Path
from typing import Any, Literal

import polars as pl
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from connectors.errors import SourceError
from transforms.csv_typing import DATETIME_UTC, blank_to_null, parse_date, parse_datetime

SCALAR_TYPES: dict[str, pl.DataType] = {
    "string": pl.String(),
    "int": pl.Int64(),
    "float": pl.Float64(),
    "bool": pl.Boolean(),
    "date": pl.Date(),
    "datetime": DATETIME_UTC,
}
ORDER_LINE = ("order_id", "external_id", "product_id", "product_name", "variant_id", "currency", "price", "time")
# Optional columns of an eCommerce order's rows: the line's own, then the order's (read from its first row).
ORDER_OPTIONAL = ("quantity", "image_url", "product_url", "properties", "total_value", "subtotal_value", "tax",
                  "shipping", "total_discounts", "discounts", "cart_id", "source", "metadata")
# The columns that identify a user (transforms/identity.py): each dataset that names users needs one of them.
IDENTIFIERS = ("external_id", "alias_name", "alias_label", "email", "phone")
IDENTIFIED = ("users", "purchases", "events", "push_tokens", "user_deletes")
REQUIRED: dict[str, tuple[str, ...]] = {
    "users": (),
    "purchases": ("purchase_id", "product_id", "currency", "price", "time"),
    "events": ("event_id", "name", "time"),
    "push_tokens": ("app_id", "token"),
    "user_deletes": (),
    # identity requests (braze_migrate/ops/identities.py): an alias user gets an external_id; an id is renamed
    "identifies": ("alias_name", "alias_label", "external_id"),
    "external_id_renames": ("current_external_id", "new_external_id"),
    # eCommerce events (--purchases-as ecommerce, transforms/ecommerce.py): rows are the lines of an order.
    "order_refunds": ORDER_LINE,
    "order_cancellations": (*ORDER_LINE, "cancel_reason"),
}
OPTIONAL: dict[str, tuple[str, ...]] = {
    "users": ("updated_at", *IDENTIFIERS),
    # with --purchases-as ecommerce: order_id instead of purchase_id, and the order columns (docs/sources.md)
    "purchases": ("quantity", "properties", "order_id", "product_name", "variant_id", *IDENTIFIERS,
                  *(c for c in ORDER_OPTIONAL if c not in ("quantity", "properties"))),
    "events": ("properties", *IDENTIFIERS),
    "push_tokens": ("device_id", "platform", *IDENTIFIERS),
    "user_deletes": ("reason", *IDENTIFIERS),
    "identifies": (),
    "external_id_renames": (),
    "order_refunds": ("refund_id", *ORDER_OPTIONAL),
    "order_cancellations": ORDER_OPTIONAL,
}
ORIGIN = ("_file", "_row")
CATALOG_PREFIX = "catalogs/"  # a catalog's dataset name: catalogs/<catalog name>
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class MappingError(SourceError):
    """The mapping file is wrong; `problems` lists each one with its file, line and column."""

    def __init__(self, file: str, problems: list[str]):
        self.file = file
        self.problems = problems
        shown = (
            problems[0]
            if len(problems) == 1
            else f"{len(problems)} problems: " + " ".join(f"[{i}] {p}" for i, p in enumerate(problems, 1))
        )
        super().__init__(f"mapping file {file}: {shown}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _env_name(value: str | None) -> str | None:
    if value is not None and not _ENV_NAME.match(value):
        raise ValueError(
            "must be the NAME of an environment variable (like WAREHOUSE_URL) that holds the value; "
            "secrets never go in the mapping file"
        )
    return value


class Storage(_Strict):
    """Object-store options; every credential is the name of the environment variable that holds it."""

    endpoint: str | None = None
    region: str | None = None
    allow_http: bool = False
    anonymous: bool = False
    access_key_id_env: str | None = None
    secret_access_key_env: str | None = None
    session_token_env: str | None = None
    service_account_path: str | None = None
    service_account_key_env: str | None = None
    account_name: str | None = None
    account_key_env: str | None = None
    sas_token_env: str | None = None

    _check_env = field_validator(
        "access_key_id_env",
        "secret_access_key_env",
        "session_token_env",
        "service_account_key_env",
        "account_key_env",
        "sas_token_env",
    )(_env_name)


class Sql(_Strict):
    """Defaults for the SQL datasets: the connection's environment variable and the fetch batch size."""

    connection_env: str | None = None
    # 10,000 rows per fetch: measured peak ~80 MB over baseline for 10 columns, as fast as 50,000 (~180 MB).
    batch_size: int = Field(10_000, ge=1)

    _check_env = field_validator("connection_env")(_env_name)


class DatasetMap(_Strict):
    """One dataset: where it is (path or query, or found in SOURCE by name) and how its columns map."""

    path: str | None = None
    query: str | None = None
    format: Literal["parquet", "csv", "ndjson"] | None = None
    separator: str | None = None
    connection_env: str | None = None
    batch_size: int | None = Field(None, ge=1)
    columns: dict[str, str] = Field(default_factory=dict)
    column_case: Literal["keep", "lower"] = "keep"
    types: dict[str, Any] = Field(default_factory=dict)
    skip: list[str] = Field(default_factory=list)
    hive_columns: bool = False
    # Arrays of objects changed item by item: {attribute column: identifier key of its items} (users only).
    # The column reaches the pipeline as `attribute[key]` (transforms/nested.py's naming convention).
    arrays_of_objects: dict[str, str] = Field(default_factory=dict)

    _check_env = field_validator("connection_env")(_env_name)

    @field_validator("arrays_of_objects")
    @classmethod
    def _identifier_keys(cls, v: dict[str, str]) -> dict[str, str]:
        for column, key in v.items():
            if not key or any(ch in key for ch in " .$[]") or "[" in column or "]" in column:
                raise ValueError(
                    f"arrays_of_objects: {column!r}: {key!r} must be the key that identifies each item "
                    "(no space, '.', '$' or brackets), like `pets: id`"
                )
        return v

    @field_validator("separator")
    @classmethod
    def _one_character(cls, v: str | None) -> str | None:
        if v is not None and len(v) != 1:
            raise ValueError("separator must be one character, like ',' or '|'")
        return v

    @model_validator(mode="after")
    def _one_location(self) -> DatasetMap:
        if self.path is not None and self.query is not None:
            raise ValueError("give either path or query, not both")
        if self.query is not None and (self.format or self.separator or self.hive_columns):
            raise ValueError("format, separator and hive_columns apply to files, not to a query")
        return self

    def dtypes(self) -> dict[str, pl.DataType]:
        """The declared types as Polars types, by the name each entry uses."""
        return {c: dtype_of(spec) for c, spec in self.types.items()}


class MappingModel(_Strict):
    """The whole mapping file."""

    version: Literal[1] = 1
    source: str | None = None
    storage: Storage = Field(default_factory=Storage)
    sql: Sql = Field(default_factory=Sql)
    datasets: dict[Literal["users", "purchases", "events", "push_tokens", "user_deletes", "order_refunds",
                           "order_cancellations", "identifies", "external_id_renames"], DatasetMap] = Field(
        default_factory=dict
    )
    # Braze catalogs by name (the dataset `catalogs/<name>`): an `id` column and one column per catalog field.
    catalogs: dict[str, DatasetMap] = Field(default_factory=dict)

    @field_validator("catalogs")
    @classmethod
    def _catalog_names(cls, v: dict[str, DatasetMap]) -> dict[str, DatasetMap]:
        for name in v:
            if not re.match(r"^[A-Za-z0-9_-]+$", name):
                raise ValueError(f"catalog name {name!r}: Braze takes letters, numbers, hyphens and underscores")
        return v

    def specs(self) -> dict[str, DatasetMap]:
        """Every dataset the file describes by its dataset name (catalogs as `catalogs/<name>`)."""
        return {**self.datasets, **{f"{CATALOG_PREFIX}{k}": v for k, v in self.catalogs.items()}}

    @model_validator(mode="after")
    def _queries_have_a_connection(self) -> MappingModel:
        for name, ds in self.specs().items():
            if ds.query is not None and ds.connection_env is None and self.sql.connection_env is None:
                raise ValueError(
                    f"dataset {name!r} has a query but no connection: set sql.connection_env (or "
                    f"datasets.{name}.connection_env) to the name of the environment variable holding the URL"
                )
        return self


class Mapping:
    """A validated mapping file: the model, where it came from, and how to point at its lines."""

    def __init__(self, file: Path, model: MappingModel, lines: _Lines, digest: str):
        self.file = file
        self.model = model
        self._lines = lines
        self.digest = digest

    def error(self, problems: list[tuple[tuple, str]]) -> MappingError:
        """A MappingError for (location in the file, message) pairs."""
        return MappingError(str(self.file), [self._lines.describe(loc, msg) for loc, msg in problems])

    def connection_env(self, dataset: str) -> str | None:
        ds = self.model.specs().get(dataset)
        return (ds.connection_env if ds else None) or self.model.sql.connection_env

    def batch_size(self, dataset: str) -> int:
        ds = self.model.specs().get(dataset)
        return (ds.batch_size if ds else None) or self.model.sql.batch_size

    def env_names(self) -> list[tuple[tuple, str]]:
        """Every environment variable the file refers to, with where it does."""
        out = []
        for field, value in self.model.storage:
            if field.endswith("_env") and value:
                out.append((("storage", field), value))
        if self.model.sql.connection_env:
            out.append((("sql", "connection_env"), self.model.sql.connection_env))
        for name, ds in self.model.specs().items():
            if ds.query is not None:
                loc = (*_section(name), "connection_env") if ds.connection_env else ("sql", "connection_env")
                out.append((loc, self.connection_env(name)))
        return list(dict.fromkeys(out))

    def require_env(self, environ: MappingABC[str, str]) -> None:
        """Fail now, naming the variable, when an environment variable the file refers to is not set."""
        missing = [
            (loc, f"environment variable {name} is not set: export it before running")
            for loc, name in self.env_names()
            if not environ.get(name)
        ]
        if missing:
            raise self.error(missing)


def load_mapping(path: str | Path) -> Mapping:
    """Read and check a mapping file; a MappingError lists every problem with its line."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise SourceError(
            f"mapping file {file} cannot be read ({exc.strerror or exc}): check the path"
        ) from None
    try:
        raw = yaml.safe_load(text)
        lines = _Lines(yaml.compose(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise MappingError(str(file), [f"{where}{problem}"]) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise MappingError(str(file), ["the file must be a YAML mapping with a `datasets:` key"])
    problems = _type_problems(raw)
    try:
        model = MappingModel.model_validate(raw)
    except ValidationError as exc:
        problems = _explain(exc) + problems
    if problems:
        raise MappingError(str(file), [lines.describe(loc, msg) for loc, msg in problems])
    digest = hashlib.sha256(json.dumps(model.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()
    return Mapping(file, model, lines, digest)


def dtype_of(spec: Any) -> pl.DataType:
    """A type spec as a Polars type: `string|int|float|bool|date|datetime`, `[T]` (a list of T) or
    `{field: T, ...}` (a struct, read from JSON object text)."""
    if isinstance(spec, str):
        if spec in SCALAR_TYPES:
            return SCALAR_TYPES[spec]
        raise ValueError(
            f"unknown type {spec!r}{_did_you_mean(spec, SCALAR_TYPES)} (types: "
            f"{', '.join(SCALAR_TYPES)}, [type] for a list, {{field: type}} for a struct)"
        )
    if isinstance(spec, list):
        if len(spec) != 1:
            raise ValueError("a list type names one element type, like [string]")
        return pl.List(dtype_of(spec[0]))
    if isinstance(spec, dict) and spec:
        return pl.Struct({str(k): dtype_of(v) for k, v in spec.items()})
    raise ValueError(f"a type is a name ({', '.join(SCALAR_TYPES)}), [type] or {{field: type}}")


def check_columns(mapping: Mapping, dataset: str, schema: pl.Schema, origin: str) -> list[tuple[tuple, str]]:
    """Problems of the mapping of `dataset` against the columns the export really has (`schema`)."""
    ds = mapping.model.specs().get(dataset)
    if ds is None:
        return []
    have = [c for c in schema if c not in ORIGIN]
    base = _section(dataset)
    free = dataset == "users" or dataset.startswith(CATALOG_PREFIX)  # any column is an attribute or a field
    problems: list[tuple[tuple, str]] = []

    def unknown(loc: tuple, column: str) -> None:
        hint = _did_you_mean(column, have, case=True)
        problems.append((loc, f"column {column!r} is not in the export of {dataset} ({origin}){hint}"))

    for target, column in ds.columns.items():
        if column not in have:
            unknown(base + ("columns", target), column)
        if not free and target not in REQUIRED[dataset] + OPTIONAL[dataset]:
            known = REQUIRED[dataset] + OPTIONAL[dataset]
            hint = _did_you_mean(target, known)
            problems.append(
                (
                    base + ("columns", target),
                    f"{target!r} is not a column of {dataset}{hint} ({dataset} has {', '.join(known)})",
                )
            )
    for i, column in enumerate(ds.skip):
        if column not in have:
            unknown(base + ("skip", i), column)
        elif column in ds.columns.values():
            problems.append((base + ("skip", i), f"column {column!r} is both skipped and mapped: keep one"))
    sources = list(ds.columns.values())
    for column in sorted({c for c in sources if sources.count(c) > 1}):
        targets = [t for t, c in ds.columns.items() if c == column]
        shown = ", ".join(map(repr, targets))
        problems.append(
            (base + ("columns", targets[-1]), f"column {column!r} is mapped to {shown}: map it once")
        )
    names = final_names(ds, have)
    finals = [n for n in names.values() if n is not None]
    for name in ds.types:
        if name in finals:
            continue
        if name in names and names[name] is None:
            problems.append((base + ("types", name), f"column {name!r} is skipped; it needs no type"))
        elif name not in names:
            unknown(base + ("types", name), name)
    for target in sorted({n for n in finals if finals.count(n) > 1}):
        sources = [c for c, n in names.items() if n == target]
        shown = ", ".join(map(repr, sources))
        problems.append(
            (base + ("columns",), f"columns {shown} would all be named {target!r}: map or skip all but one")
        )
    required = ("id",) if dataset.startswith(CATALOG_PREFIX) else REQUIRED[dataset]
    if dataset == "purchases" and "order_id" in finals:  # eCommerce orders: lines need no purchase_id
        required = ORDER_LINE
    if dataset in IDENTIFIED and not any(c in finals for c in IDENTIFIERS):
        message = (f"{dataset} has no identifier column after mapping: map a column onto external_id, "
                   "alias_name and alias_label, email or phone under columns")
        problems.append((base + ("columns",), message))
    for column in required:
        if column not in finals:
            hint = _did_you_mean(column, list(ds.columns), prefix="; is the key ")
            message = (
                f"{dataset} has no {column!r} column after mapping: add `{column}: <export column>` "
                f"under columns{hint}"
            )
            problems.append((base + ("columns",), message))
    for name, spec in ds.types.items():
        target = target_name(ds, have, name)
        column = next((c for c, n in names.items() if n == target), None)
        if column is not None and not convertible(schema[column], dtype_of(spec)):
            wanted = json.dumps(spec)
            message = f"column {column!r} is {schema[column]} in the export; it cannot be read as {wanted}"
            problems.append((base + ("types", name), message))
    for name in ds.arrays_of_objects:
        if dataset != "users":
            problems.append((base + ("arrays_of_objects", name), "arrays_of_objects applies to users only"))
        elif name not in finals:
            unknown(base + ("arrays_of_objects", name), name)
    return problems


def _section(dataset: str) -> tuple[str, ...]:
    """Where a dataset sits in the file: `datasets.<name>`, or `catalogs.<name>` for a catalog."""
    if dataset.startswith(CATALOG_PREFIX):
        return ("catalogs", dataset[len(CATALOG_PREFIX):])
    return ("datasets", dataset)


def final_names(ds: DatasetMap, have: list[str]) -> dict[str, str | None]:
    """Export column → its name after mapping (None: skipped)."""
    renamed = {column: target for target, column in ds.columns.items()}
    out: dict[str, str | None] = {}
    for column in have:
        if column in ds.skip:
            out[column] = None
        elif column in renamed:
            out[column] = renamed[column]
        else:
            out[column] = column.lower() if ds.column_case == "lower" else column
    return out


def target_name(ds: DatasetMap, have: list[str], name: str) -> str:
    """A name used in `types` (an export column or a mapped name) as the column's final name."""
    names = final_names(ds, have)
    if name in names.values():
        return name
    return names.get(name) or name


def apply_mapping(ds: DatasetMap, lf: pl.LazyFrame) -> pl.LazyFrame:
    """Rename, skip and type the columns of one dataset's frame, lazily; `_file` and `_row` stay last."""
    schema = lf.collect_schema()
    have = [c for c in schema if c not in ORIGIN]
    names = final_names(ds, have)
    declared = {target_name(ds, have, c): dtype for c, dtype in ds.dtypes().items()}
    exprs = []
    for column, target in names.items():
        if target is None:
            continue
        expr = pl.col(column)
        if target in declared:
            expr = convert(expr, schema[column], declared[target])
        if target in ds.arrays_of_objects:
            target = f"{target}[{ds.arrays_of_objects[target]}]"
        exprs.append(expr.alias(target))
    return lf.select(*exprs, *ORIGIN)


def typed_columns(ds: DatasetMap | None, schema: pl.Schema) -> tuple[str, ...]:
    """Final names of the columns whose type the mapping declares (CSV typing must leave them alone)."""
    if ds is None:
        return ()
    have = [c for c in schema if c not in ORIGIN]
    return tuple(target_name(ds, have, c) for c in ds.types)


def convertible(current: pl.DataType, target: pl.DataType) -> bool:
    """Whether a column of type `current` can be read as `target` without guessing."""
    if current == target or current == pl.String or current == pl.Null:
        return True
    if isinstance(target, (pl.List, pl.Struct)):
        return type(current) is type(target)
    if target == pl.String:
        return not isinstance(current, (pl.List, pl.Struct, pl.Binary))
    numeric = current.is_numeric() or current == pl.Boolean
    if target.is_numeric():
        return numeric
    if target == pl.Boolean:
        return current.is_integer()
    return current == pl.Date or isinstance(current, pl.Datetime)


def convert(expr: pl.Expr, current: pl.DataType, target: pl.DataType) -> pl.Expr:
    """`expr` (of type `current`) as `target`: text is parsed (blank → null, ISO dates, JSON for lists and
    structs), naive datetimes are UTC, numbers are cast. Values that do not parse become null."""
    if current == target:
        return expr
    if current == pl.String:
        if isinstance(target, (pl.List, pl.Struct)):
            decoded = blank_to_null(expr).str.json_decode(_text_leaves(target))
            return convert(decoded, _text_leaves(target), target)
        return _from_text(blank_to_null(expr), target)
    if isinstance(target, pl.Struct) and isinstance(current, pl.Struct):
        have = {f.name: f.dtype for f in current.fields}
        fields = [
            (
                convert(expr.struct.field(f.name), have[f.name], f.dtype)
                if f.name in have
                else pl.lit(None, f.dtype)
            ).alias(f.name)
            for f in target.fields
        ]
        return pl.when(expr.is_not_null()).then(pl.struct(fields))
    if isinstance(target, pl.List) and isinstance(current, pl.List):
        return expr.list.eval(convert(pl.element(), current.inner, target.inner))
    if isinstance(target, pl.Datetime):
        utc = expr.cast(pl.Datetime("us")) if current == pl.Date else expr
        if current == pl.Date or current.time_zone is None:
            return utc.dt.replace_time_zone("UTC")
        return utc.dt.convert_time_zone("UTC")
    if target == pl.Date and isinstance(current, pl.Datetime):
        return convert(expr, current, DATETIME_UTC).dt.date()
    return expr.cast(target, strict=False)


def _from_text(text: pl.Expr, target: pl.DataType) -> pl.Expr:
    if target == pl.String:
        return text
    if target == pl.Boolean:
        lower = text.str.to_lowercase()
        return pl.when(lower.is_in(["true", "false"])).then(lower == "true")
    if target == pl.Date:
        return parse_date(text)
    if isinstance(target, pl.Datetime):
        return parse_datetime(text)
    return text.cast(target, strict=False)


def _text_leaves(dtype: pl.DataType) -> pl.DataType:
    """`dtype` with dates and datetimes as text: JSON holds them as strings, parsed afterwards."""
    if isinstance(dtype, pl.Struct):
        return pl.Struct({f.name: _text_leaves(f.dtype) for f in dtype.fields})
    if isinstance(dtype, pl.List):
        return pl.List(_text_leaves(dtype.inner))
    if dtype == pl.Date or isinstance(dtype, pl.Datetime):
        return pl.String()
    return dtype


def _did_you_mean(word: str, candidates, *, case: bool = False, prefix: str = "; did you mean ") -> str:
    candidates = [str(c) for c in candidates]
    if case:
        folded = {c.lower(): c for c in candidates}
        if word.lower() in folded and folded[word.lower()] != word:
            return f"{prefix}{folded[word.lower()]!r}?"
        close = difflib.get_close_matches(word.lower(), list(folded), n=1, cutoff=0.6)
        return f"{prefix}{folded[close[0]]!r}?" if close else ""
    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return f"{prefix}{close[0]!r}?" if close else ""


def _type_problems(raw: dict) -> list[tuple[tuple, str]]:
    """Every `types` entry that is not a valid type spec, located at its column."""
    datasets = raw.get("datasets")
    out = []
    for name, ds in datasets.items() if isinstance(datasets, dict) else []:
        types = ds.get("types") if isinstance(ds, dict) else None
        for column, spec in types.items() if isinstance(types, dict) else []:
            try:
                dtype_of(spec)
            except ValueError as exc:
                out.append((("datasets", name, "types", column), str(exc)))
    return out


_SECTIONS: dict[tuple, type[BaseModel]] = {(): MappingModel, ("storage",): Storage, ("sql",): Sql}
_DATASET_SECTIONS = (("datasets",), ("catalogs",))


def _explain(exc: ValidationError) -> list[tuple[tuple, str]]:
    """Pydantic's errors as (location, message), with the closest valid name; input values never shown."""
    out = []
    for err in exc.errors():
        loc, kind = tuple(err["loc"]), err["type"]
        if kind == "extra_forbidden":
            parent, key = loc[:-1], str(loc[-1])
            model = _SECTIONS.get(parent, DatasetMap if parent[:1] in _DATASET_SECTIONS else None)
            fields = list(model.model_fields) if model else []
            hint = _did_you_mean(key, fields)
            if not hint and re.search(r"password|secret|connection|token|key", key, re.IGNORECASE):
                hint = "; credentials go in environment variables, named by the *_env options"
            out.append((loc, f"unknown option {key!r}{hint}"))
        elif kind == "literal_error" and loc[:1] == ("datasets",) and loc[-1] == "[key]":
            name = str(loc[1])
            hint = _did_you_mean(name, tuple(REQUIRED))
            out.append((loc[:2], f"unknown dataset {name!r}{hint} (datasets: {', '.join(REQUIRED)})"))
        elif kind == "literal_error":
            expected = err.get("ctx", {}).get("expected", "")
            given = err.get("input")
            hint = (
                _did_you_mean(str(given), re.findall(r"'([^']+)'", expected))
                if isinstance(given, str)
                else ""
            )
            out.append((loc, f"must be {expected}{hint}"))
        elif kind == "value_error":
            out.append((loc, str(err["msg"]).removeprefix("Value error, ")))
        else:
            out.append((loc, str(err["msg"])))
    return out


class _Lines:
    """Line numbers of the keys of a composed YAML document, so a message can say where to look."""

    def __init__(self, root: yaml.Node | None):
        self.root = root

    def line(self, loc: tuple) -> int | None:
        node, found = self.root, None
        for part in loc:
            if isinstance(node, yaml.MappingNode):
                match = next(((k, v) for k, v in node.value if str(k.value) == str(part)), None)
                if match is None:
                    break
                found, node = match[0].start_mark.line + 1, match[1]
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
                node = node.value[part]
                found = node.start_mark.line + 1
            else:
                break
        return found

    def describe(self, loc: tuple, message: str) -> str:
        where = ".".join(str(p) for p in loc if p != "[key]")
        line = self.line(tuple(p for p in loc if p != "[key]"))
        prefix = f"line {line} " if line else ""
        return f"{prefix}({where}): {message}" if where else f"{prefix}{message}"
