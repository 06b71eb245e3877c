"""Normalize scanned exports into what Braze accepts, and split off what it would not, with reasons.

Pure and lazy: LazyFrames in, LazyFrames out; no I/O, no clock. Each `normalize_*` returns
`Normalized(good, rejects)` as docs/design.md fixes them. A rejected *row* is never sent; a rejected
*cell* drops that field only (users' profile fields and attributes, a token's device_id).
`good` and `rejects` share their input plan: collect them together (`pl.collect_all`) to read the
source once. Row checks are evaluated as "index of the first failing check"; reasons and reported
values are built only for the rows that failed, which keeps the good path cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import polars as pl
import polars_hash as plh

from transforms import identity
from transforms.csv_typing import apply_csv_types, blank_to_null, parse_date, parse_datetime
from transforms.currencies import ISO_4217
from transforms.jsontext import (
    ISO_MS,
    OBJECT_DTYPE,
    braze_ready,
    compact_json,
    iso_text,
    json_text,
    object_from_struct,
    object_from_text,
    to_utc,
)
from transforms.nested import array_from_json, array_problem, groups_from_json, keyed_array
from transforms.reference import ISO_639_1, ISO_3166_ALPHA2

REJECTS_SCHEMA = pl.Schema(
    {
        "dataset": pl.String,
        "key": pl.String,
        "column": pl.String,
        "value": pl.String,
        "reason": pl.String,
        "file": pl.String,
        "row": pl.Int64,
    }
)
PERSONAL_COLUMNS = frozenset({"email", "phone", "first_name", "last_name", "token"})
MAX_EXTERNAL_ID_BYTES = 987
MAX_STRING = 255
MAX_REJECT_VALUE = 100
MAX_NESTED_BYTES = 100_000
PURCHASE_RESERVED = ("time", "product_id", "quantity", "event_name", "price", "currency")
EVENT_RESERVED = ("time", "event_name")
GENDERS = ("M", "F", "O", "N", "P")
SUBSCRIPTION_STATES = ("opted_in", "subscribed", "unsubscribed")
PLATFORMS = ("ios", "android")

SUPERSEDED = "superseded by a later row for this external_id (updated_at)"
# Braze's external ids are exact, case-sensitive strings ("Setting user IDs", braze.com/docs/developer_guide/
# platform_integration_guides/swift/analytics/setting_user_ids): nothing documents trimming, so " dup" and
# "dup" would be two profiles there. Surrounding whitespace is a warehouse artifact far more often than an id,
# so it is trimmed, and rows that become one user this way are merged with this reason, never silently.
SUPERSEDED_TRIMMED = ("superseded by a later row for this external_id once surrounding whitespace is trimmed "
                      "(\" dup\", \"dup\" and \"dup \" are one user here; to Braze they would be different users): "
                      "trim the ids in the warehouse")
EXTERNAL_ID_TOO_LONG = f"external_id longer than {MAX_EXTERNAL_ID_BYTES} bytes; Braze rejects it"
TOO_LONG = f"longer than {MAX_STRING} characters; Braze would truncate it silently"
NOT_FINITE = "not a finite number (NaN or infinity)"
NESTED_TOO_LARGE = f"nested object larger than {MAX_NESTED_BYTES // 1000} KB; Braze drops the whole update"
BAD_EMAIL = "not a valid email address"
BAD_PHONE = "not an E.164 phone number (+ and 7 to 15 digits)"
MISSING_IDENTIFIER = "missing external_id (or alias_name and alias_label, email, phone): the row names no user"
RESERVED_EXTERNAL_ID = "external_id starts with the control character U+001F, which marks other identities"
HALF_ALIAS = "a user alias needs both alias_name and alias_label; one is missing"
RESERVED_ALIAS = "alias_name or alias_label holds the control character U+001F"
BAD_EMAIL_ID = "email identifies this row (no external_id or alias) and is not a valid email address"
BAD_PHONE_ID = "phone identifies this row (no external_id, alias or email) and is not an E.164 number (+ and 7 to 15 digits)"
BAD_GENDER = "gender must be one of M, F, O, N, P"
BAD_SUBSCRIPTION = "must be opted_in, subscribed or unsubscribed"
BAD_COUNTRY = "country is not an ISO-3166-1 alpha-2 code"
BAD_LANGUAGE = "language is not an ISO-639-1 code"
BAD_DOB = "dob is not a date (YYYY-MM-DD)"
BAD_UPDATED_AT = "updated_at is not a date/time; the row counts as the oldest for its external_id"
BAD_CURRENCY = "currency is not a current ISO 4217 code"
BAD_PRICE = "price is not a number"
PRICE_NOT_FINITE = f"price is {NOT_FINITE}"
NEGATIVE_PRICE = "price is negative"
BAD_QUANTITY = "quantity is not a whole number from 1 to 100"
BAD_TIME = "time is not an ISO 8601 date/time"
BAD_PROPERTIES_TYPE = "properties is not a JSON object"
WEB_TOKEN = "Braze cannot import web push tokens"
BAD_PLATFORM = "platform must be ios, android or web"
BAD_DEVICE_ID = "device_id must be 8 to 255 bytes; the token is sent without it"
DUPLICATE_TOKEN = "duplicate (app_id, token); the last row in file order is sent"
DOLLAR_COLUMN = "attribute name starts with '$'; Braze rejects it: rename the column"
LONG_COLUMN = f"attribute name longer than {MAX_STRING} characters: rename the column"
BAD_NESTED_KEY = (
    "nested object key contains a space, '.' or '$'; Braze drops the whole update: rename the key"
)


def missing(column: str) -> str:
    return f"missing {column}"


def not_text(column: str) -> str:
    return f"{column} is not text or a whole number"


def too_long(column: str) -> str:
    return f"{column} {TOO_LONG}"


def duplicate(id_column: str) -> str:
    return f"duplicate {id_column}; sent once"


class Normalized(NamedTuple):
    good: pl.LazyFrame
    rejects: pl.LazyFrame


class NormalizeError(Exception):
    """A dataset cannot be normalized at all (a required column is missing); says what to fix."""


class Check(NamedTuple):
    """A row check: the row is rejected with `reason` when `fails`; `value` is what the reject shows.

    `value` is a column name (its raw value is shown, redacted for personal data), an expression,
    or None.
    """

    fails: pl.Expr
    reason: str | pl.Expr
    value: str | pl.Expr | None = None


# --- users --------------------------------------------------------------------------------------------


def normalize_users(
    lf: pl.LazyFrame, csv_types: Mapping[str, pl.DataType] | None = None, *, files: Sequence[str] = (),
    column_rejects: bool = True,
) -> Normalized:
    """One row per external_id (latest `updated_at`, ties to the later row) with each attribute's JSON.

    `csv_types` (from `infer_csv_types`) types the custom attribute columns of a CSV export; profile
    fields are validated from their text. Invalid profile values and over-long strings drop the cell.
    `column_rejects=False` leaves out the rejects of unusable columns (`users_column_rejects`): the planner
    counts those over every row of a partition, also the rows it skips.
    """
    _check_columns(lf, "users", (), files)
    _check_identifiers(lf, "users", files)
    lf, schema, attributes, problems = _typed_users(lf, csv_types)
    sent = [c for c in attributes if c not in problems]

    key, key_checks = _external_id(schema, required=True)
    has_ts = "updated_at" in schema
    updated_at = (
        _as_utc("updated_at", schema["updated_at"]) if has_ts else pl.lit(None, pl.Datetime("us", "UTC"))
    )
    cells = {c: _user_cell(c, schema[c]) for c in sent}
    fallible = [c for c, (_, _, why) in cells.items() if why is not None]
    ok = pl.col("__fail").is_null()
    # A failed key is a property of the key itself, so ranking all rows by key cannot mix valid and failed rows.
    latest = ok & pl.col("__latest")
    bad_ts = (
        ok & _present("updated_at", schema["updated_at"]) & pl.col("__ts").is_null()
        if has_ts
        else pl.lit(False)
    )
    whys = {c: pl.col(f"__why__{c}") for c in fallible}
    dropped = (
        pl.concat_list(
            [pl.when(why.is_not_null()).then(pl.lit(c)) for c, why in whys.items()]
        ).list.drop_nulls()
        if fallible
        else pl.lit([], dtype=pl.List(pl.String))
    )
    rows = (
        lf.with_columns(key.alias("__external_id"), updated_at.alias("__ts"))
        .with_columns(_first_failure(key_checks).alias("__fail"))
        .sort(["__external_id", "__ts", "_file", "_row"], nulls_last=False)
        .with_columns(_last_of_run("__external_id").alias("__latest"))
        .with_columns(*[prepared.alias(f"__v__{c}") for c, (prepared, _, _) in cells.items()])
        .with_columns(*[pl.when(latest).then(cells[c][2]).alias(f"__why__{c}") for c in fallible])
        .with_columns(
            *[
                (pl.when(whys[c].is_null()).then(json) if c in whys else json).alias(f"__json__{c}")
                for c, (_, json, _) in cells.items()
            ],
            dropped.cast(pl.List(pl.String)).alias("_dropped"),
        )
    )
    good = rows.filter(latest).select(
        pl.col("__external_id").alias("external_id"),
        "_file",
        "_row",
        "_dropped",
        *[pl.col(f"__json__{c}").alias(c) for c in sent],
    )
    # Reasons and shown values are built only for the few rows that have a reject.
    row_reason, row_value = _failure_reason_and_value(key_checks, schema)
    entries = [
        pl.when(~ok).then(_entry(None, row_reason, row_value)),
        pl.when(ok & ~pl.col("__latest")).then(_entry(None, pl.when(_trimmed_apart(schema)).then(
            pl.lit(SUPERSEDED_TRIMMED)).otherwise(pl.lit(SUPERSEDED)), None)),
    ]
    if has_ts:
        entries.append(
            pl.when(bad_ts).then(
                _entry(
                    "updated_at", pl.lit(BAD_UPDATED_AT), _reject_value("updated_at", schema["updated_at"])
                )
            )
        )
    entries.extend(
        pl.when(why.is_not_null()).then(_entry(c, why, _reject_value(c, schema[c])))
        for c, why in whys.items()
    )
    has_reject = ~latest | bad_ts | (pl.col("_dropped").list.len() > 0)
    rejects = [
        rows.filter(has_reject)
        .select(
            pl.col("__external_id"),
            "_file",
            "_row",
            pl.concat_list(entries).list.drop_nulls().alias("__entry"),
        )
        .explode("__entry")
        .filter(pl.col("__entry").is_not_null())
        .select(
            pl.lit("users").alias("dataset"),
            pl.col("__external_id").alias("key"),
            pl.col("__entry").struct.field("column"),
            pl.col("__entry").struct.field("value"),
            pl.col("__entry").struct.field("reason"),
            pl.col("_file").alias("file"),
            pl.col("_row").alias("row"),
        )
    ]
    if problems and column_rejects:
        rejects.append(_columns_rejected(lf, "users", problems))
    return Normalized(good, _combine(rejects))


def users_column_rejects(lf: pl.LazyFrame, csv_types: Mapping[str, pl.DataType] | None = None) -> pl.LazyFrame:
    """The rejects of the users columns that cannot be sent at all (a name starting with `$`, too long, an
    unusable type): one per column and file, counting its non-empty cells."""
    lf, _, _, problems = _typed_users(lf, csv_types)
    return _columns_rejected(lf, "users", problems) if problems else pl.LazyFrame(schema=REJECTS_SCHEMA)


def _typed_users(lf: pl.LazyFrame, csv_types: Mapping[str, pl.DataType] | None
                 ) -> tuple[pl.LazyFrame, pl.Schema, list[str], dict[str, str]]:
    """(the users frame with a CSV export's custom attributes typed, its schema, the attribute columns, the
    columns that cannot be sent and why)."""
    schema = lf.collect_schema()
    attributes = [c for c in schema if c not in ("external_id", "alias_name", "alias_label", "updated_at", "_file", "_row")]
    if csv_types:
        custom = {c: t for c, t in csv_types.items() if c in attributes and c not in _PROFILE_FIELDS}
        lf = apply_csv_types(lf, custom)
        schema = lf.collect_schema()
    problems = {c: p for c in attributes if (p := _attribute_problem(c, schema[c]))}
    return lf, schema, attributes, problems


_ENTRY = pl.Struct({"column": pl.String, "value": pl.String, "reason": pl.String})


def _entry(column: str | None, reason: pl.Expr, value: pl.Expr | None) -> pl.Expr:
    return pl.struct(
        pl.lit(column, pl.String).alias("column"),
        (value if value is not None else pl.lit(None)).cast(pl.String).alias("value"),
        reason.cast(pl.String).alias("reason"),
    )


def _user_cell(name: str, dtype: pl.DataType) -> tuple[pl.Expr, pl.Expr, pl.Expr | None]:
    """(prepared value, its Braze JSON text, reason the cell is dropped or None if it cannot fail).

    The JSON text and the reason read the prepared value from column `__v__{name}`, so each
    conversion runs once per cell (Polars does not share subexpressions under when/then).
    """
    if name in _PROFILE_FIELDS:
        return _PROFILE_FIELDS[name](name, dtype)
    if (keyed := keyed_array(name)) is not None:
        return _keyed_array_cell(name, dtype, keyed[1])
    col, v = pl.col(name), pl.col(f"__v__{name}")
    if dtype == pl.String or isinstance(dtype, (pl.Categorical, pl.Enum)):
        return (
            _as_text(name, dtype),
            json_text(v),
            pl.when(v.str.len_chars() > MAX_STRING).then(pl.lit(TOO_LONG)),
        )
    if dtype.is_float():
        return col, json_text(v), pl.when(~v.is_finite()).then(pl.lit(NOT_FINITE))
    if dtype.is_integer() or dtype.is_decimal():
        return col, v.cast(pl.String), None
    if dtype == pl.Boolean:
        return col, pl.when(v).then(pl.lit("true")).when(~v).then(pl.lit("false")), None
    if dtype == pl.Date or isinstance(dtype, pl.Datetime):
        return iso_text(col, dtype), pl.lit('"') + v + pl.lit('"'), None
    if dtype == pl.Time:
        return col.cast(pl.String), json_text(v), None
    if isinstance(dtype, (pl.List, pl.Array)):
        # An empty list removes the attribute (null); a list of objects is limited to 100 KB like an object.
        too_large = pl.when(v.str.len_bytes() > MAX_NESTED_BYTES).then(pl.lit(NESTED_TOO_LARGE))
        return compact_json(col, dtype), pl.when(v != "[]").then(v), too_large
    if isinstance(dtype, pl.Struct):
        why = pl.when(v.str.len_bytes() > MAX_NESTED_BYTES).then(pl.lit(NESTED_TOO_LARGE))
        if (bad_key := _bad_key_present(col, dtype)) is not None:
            why = why.when(bad_key).then(pl.lit(BAD_NESTED_KEY))
        return compact_json(col, dtype, time_objects=True), v, why
    return pl.lit(None, pl.String), pl.lit(None, pl.String), None


def _profile(
    normalise: Callable[[pl.Expr], pl.Expr] | None = None,
    ok: Callable[[pl.Expr], pl.Expr] | None = None,
    reason: str | Callable[[str], str] = "",
) -> Callable[[str, pl.DataType], tuple[pl.Expr, pl.Expr, pl.Expr]]:
    """A profile field's cell: its text, normalised, kept when `ok`, else dropped with `reason`."""

    def cell(name: str, dtype: pl.DataType) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
        text = _as_text(name, dtype)
        v = pl.col(f"__v__{name}")
        why = pl.when(_present(name, dtype) & v.is_null()).then(
            pl.lit(reason(name) if callable(reason) else reason or f"{name} is not text")
        )
        if ok is not None:
            why = why.when(~ok(v).fill_null(True)).then(pl.lit(reason(name) if callable(reason) else reason))
        why = why.when(v.str.len_chars() > MAX_STRING).then(pl.lit(TOO_LONG))
        return (normalise(text) if normalise else text), json_text(v), why

    return cell


def _keyed_array_cell(name: str, dtype: pl.DataType, key: str) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
    """An array of objects changed item by item (`name[key]` column): a list of structs, or its JSON text
    in CSV; each item needs a unique `key`; at most 100 KB like a nested object."""
    col, v = pl.col(name), pl.col(f"__v__{name}")
    if isinstance(dtype, (pl.List, pl.Array)) and isinstance(dtype.inner, pl.Struct) and key in dtype.inner.to_schema():
        items = col.arr.to_list() if isinstance(dtype, pl.Array) else col
        ids = items.list.eval(pl.element().struct.field(key))
        bad = (ids.list.eval(pl.element().is_null()).list.any() | (ids.list.n_unique() != ids.list.len()))
        text = compact_json(col, dtype)
        prepared = pl.struct(pl.when(~bad).then(text).alias("json"),
                             pl.when(bad).then(pl.lit(array_problem(key))).alias("error"))
    elif dtype == pl.String:
        prepared = array_from_json(blank_to_null(col), key)
    else:
        prepared = pl.struct(pl.lit(None, pl.String).alias("json"),
                             pl.when(col.is_not_null()).then(pl.lit(array_problem(key))).alias("error"))
    too_large = pl.when(v.struct.field("json").str.len_bytes() > MAX_NESTED_BYTES).then(pl.lit(NESTED_TOO_LARGE))
    return prepared, v.struct.field("json"), pl.coalesce(v.struct.field("error"), too_large)


def _groups_cell(name: str, dtype: pl.DataType) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
    """`subscription_groups`: a list of {subscription_group_id|id, subscription_state|state} (a list of
    structs, or its JSON text in CSV), validated and sent in Braze's form, sorted by group id."""
    col, v = pl.col(name), pl.col(f"__v__{name}")
    if isinstance(dtype, (pl.List, pl.Array)):
        text = compact_json(col, dtype)
    elif dtype == pl.String:
        text = blank_to_null(col)
    else:
        text = pl.when(col.is_not_null()).then(pl.lit("not a list"))
    return groups_from_json(text), v.struct.field("json"), v.struct.field("error")


def _dob_cell(name: str, dtype: pl.DataType) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
    col, v = pl.col(name), pl.col(f"__v__{name}")
    if dtype == pl.Date:
        date = col
    elif isinstance(dtype, pl.Datetime):
        date = to_utc(col, dtype).dt.date()
    else:
        date = parse_date(_as_text(name, dtype))
    why = pl.when(_present(name, dtype) & v.is_null()).then(pl.lit(BAD_DOB))
    return date, pl.lit('"') + v.dt.strftime("%Y-%m-%d") + pl.lit('"'), why


_EMAIL = r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)*\.[^@\s.]{2,}$"
_PHONE = r"^\+?[0-9]{7,15}$"
_LANGUAGE = r"^([a-z]{2})(?:[-_][a-z0-9]{2,8})*$"


def _subscription(name: str) -> str:
    return f"{name} {BAD_SUBSCRIPTION}"


_PROFILE_FIELDS: dict[str, Callable[[str, pl.DataType], tuple[pl.Expr, pl.Expr, pl.Expr]]] = {
    "email": _profile(None, lambda t: t.str.contains(_EMAIL), BAD_EMAIL),
    # Separators are dropped: "+49 (30) 1234-567" is sent as "+49301234567".
    "phone": _profile(
        lambda t: t.str.replace_all(r"[\s\-().]", ""), lambda t: t.str.contains(_PHONE), BAD_PHONE
    ),
    "gender": _profile(lambda t: t.str.to_uppercase(), lambda t: t.is_in(GENDERS), BAD_GENDER),
    "country": _profile(
        lambda t: t.str.to_uppercase(), lambda t: t.is_in(sorted(ISO_3166_ALPHA2)), BAD_COUNTRY
    ),
    # Braze takes the ISO-639-1 code only: "en-US" is sent as "en".
    "language": _profile(
        lambda t: t.str.to_lowercase().str.extract(_LANGUAGE, 1),
        lambda t: t.is_in(sorted(ISO_639_1)),
        BAD_LANGUAGE,
    ),
    "email_subscribe": _profile(
        lambda t: t.str.to_lowercase(), lambda t: t.is_in(SUBSCRIPTION_STATES), _subscription
    ),
    "push_subscribe": _profile(
        lambda t: t.str.to_lowercase(), lambda t: t.is_in(SUBSCRIPTION_STATES), _subscription
    ),
    "first_name": _profile(),
    "last_name": _profile(),
    "home_city": _profile(),
    "time_zone": _profile(),
    "dob": _dob_cell,
    "subscription_groups": _groups_cell,
}


def _attribute_problem(name: str, dtype: pl.DataType) -> str | None:
    """Why a whole attribute column cannot be sent, or None."""
    if name.startswith("$"):
        return DOLLAR_COLUMN
    if len(name) > MAX_STRING:
        return LONG_COLUMN
    if isinstance(dtype, (pl.Binary, pl.Duration, pl.Object)):
        return f"type {dtype} cannot be sent to Braze: export the column as text, a number or a date"
    if isinstance(dtype, (pl.List, pl.Array)) and _bad_nested_keys(dtype):
        return BAD_NESTED_KEY  # a bad key inside list items: judged for the whole column
    return None


def _bad_key_present(expr: pl.Expr, dtype: pl.Struct) -> pl.Expr | None:
    """True where the row itself holds a nested key Braze rejects (space, `.` or `$`) outside lists, or None
    when the struct has no such field: Polars gives every row every field, so the key is judged per row."""
    found = []
    for f in dtype.fields:
        value = expr.struct.field(f.name)
        if any(ch in f.name for ch in " .$"):
            found.append(value.is_not_null())
        elif isinstance(f.dtype, pl.Struct) and (inner := _bad_key_present(value, f.dtype)) is not None:
            found.append(inner)
        elif isinstance(f.dtype, (pl.List, pl.Array)) and _bad_nested_keys(f.dtype):
            found.append(value.is_not_null())
    return pl.any_horizontal(found).fill_null(False) if found else None


def _bad_nested_keys(dtype: pl.DataType) -> bool:
    if isinstance(dtype, (pl.List, pl.Array)):
        return _bad_nested_keys(dtype.inner)
    if isinstance(dtype, pl.Struct):
        return any(any(ch in f.name for ch in " .$") or _bad_nested_keys(f.dtype) for f in dtype.fields)
    return False


def _columns_rejected(lf: pl.LazyFrame, dataset: str, problems: dict[str, str]) -> pl.LazyFrame:
    """One reject per (problem column, file), with the number of non-empty cells not sent."""
    counts = (
        lf.group_by("_file")
        .agg(*[pl.col(c).is_not_null().sum().cast(pl.Int64).alias(c) for c in problems])
        .unpivot(index="_file", variable_name="column", value_name="n")
        .filter(pl.col("n") > 0)
    )
    reason = pl.concat_str(
        pl.col("column").replace_strict(problems, return_dtype=pl.String),
        pl.lit(" ("),
        pl.col("n").cast(pl.String),
        pl.lit(" non-empty cells in this file not sent)"),
    )
    return counts.select(
        pl.lit(dataset).alias("dataset"),
        pl.lit(None, pl.String).alias("key"),
        pl.col("column"),
        pl.lit(None, pl.String).alias("value"),
        reason.alias("reason"),
        pl.col("_file").alias("file"),
        pl.lit(None, pl.Int64).alias("row"),
    )


# --- purchases and events ---------------------------------------------------------------------------


def normalize_purchases(lf: pl.LazyFrame, *, files: Sequence[str] = (), create_aliases: bool = False) -> Normalized:
    """Valid purchases, one per purchase_id (the first in file order), each with its Braze object."""
    required = ("purchase_id", "product_id", "currency", "price", "time")
    schema = _check_columns(lf, "purchases", required, files)
    _check_identifiers(lf, "purchases", files)
    product, product_checks = _text("product_id", schema, max_len=MAX_STRING)
    has_quantity = "quantity" in schema
    fields = {
        "product_id": product,
        "currency": _as_text("currency", schema["currency"]).str.to_uppercase(),
        "price": _as_float("price", schema["price"]),
        "quantity": _as_int("quantity", schema["quantity"]) if has_quantity else pl.lit(None, pl.Int64),
    }
    price = pl.col("__price")
    checks = [
        *product_checks,
        Check(~_present("currency", schema["currency"]), missing("currency")),
        Check(~pl.col("__currency").is_in(sorted(ISO_4217)), BAD_CURRENCY, "currency"),
        Check(~_present("price", schema["price"]), missing("price")),
        Check(price.is_null(), BAD_PRICE, "price"),
        Check(~price.is_finite(), PRICE_NOT_FINITE, "price"),
        Check(price < 0, NEGATIVE_PRICE, "price"),
    ]
    if has_quantity:
        bad_quantity = _present("quantity", schema["quantity"]) & ~pl.col("__quantity").is_between(
            1, 100
        ).fill_null(False)
        checks.append(Check(bad_quantity, BAD_QUANTITY, "quantity"))
    body = [
        pl.lit("{"),
        identity.fragment(pl.col("__external_id"), create_aliases=create_aliases),
        pl.lit(',"product_id":'),
        json_text(pl.col("__product_id")),
        pl.lit(',"currency":"'),
        pl.col("__currency"),
        pl.lit('"'),
        pl.lit(',"price":'),
        json_text(price),
        pl.when(pl.col("__quantity").is_not_null()).then(
            pl.lit(',"quantity":') + pl.col("__quantity").cast(pl.String)
        ),
    ]
    return _occurrences(lf, schema, "purchases", "purchase_id", fields, checks, body, PURCHASE_RESERVED)


def normalize_events(lf: pl.LazyFrame, *, files: Sequence[str] = (), create_aliases: bool = False) -> Normalized:
    """Valid custom events, one per event_id (the first in file order), each with its Braze object."""
    schema = _check_columns(lf, "events", ("event_id", "name", "time"), files)
    _check_identifiers(lf, "events", files)
    name, name_checks = _text("name", schema, max_len=MAX_STRING)
    body = [
        pl.lit("{"),
        identity.fragment(pl.col("__external_id"), create_aliases=create_aliases),
        pl.lit(',"name":'),
        json_text(pl.col("__name")),
    ]
    return _occurrences(lf, schema, "events", "event_id", {"name": name}, name_checks, body, EVENT_RESERVED)


def _occurrences(
    lf: pl.LazyFrame,
    schema: pl.Schema,
    dataset: str,
    id_column: str,
    fields: dict[str, pl.Expr],
    field_checks: list[Check],
    body: list[pl.Expr],
    reserved: Sequence[str],
) -> Normalized:
    """Shared shape of purchases and events: checks, first row per id wins, object, fingerprint."""
    ident, id_checks = _text(id_column, schema)
    ident_col = f"__{id_column}"
    eid, eid_checks = _external_id(schema, required=True)
    props = pl.col("__props")
    props_shown = props.struct.field("json")
    if "properties" in schema:
        props_shown = pl.coalesce(props_shown, _reject_value("properties", schema["properties"]))
    checks = [
        *id_checks,
        *eid_checks,
        *field_checks,
        Check(~_present("time", schema["time"]), missing("time")),
        Check(pl.col("__time").is_null(), BAD_TIME, "time"),
        Check(props.struct.field("error").is_not_null(), props.struct.field("error"), props_shown),
    ]
    ok = pl.col("__fail").is_null()
    rows = (
        lf.with_columns(
            ident.alias(ident_col),
            eid.alias("__external_id"),
            _as_utc("time", schema["time"]).alias("__time"),
            _properties(schema, reserved).alias("__props"),
            *[e.alias(f"__{name}") for name, e in fields.items()],
        )
        .with_columns(_first_failure(checks).alias("__fail"))
        # Valid rows sort before failed ones of the same id: the first row of an id is its first valid row.
        .sort([pl.col(ident_col), ~ok, pl.col("_file"), pl.col("_row")])
        .with_columns(_first_of_run(ident_col).alias("__first"))
    )
    obj = pl.concat_str(
        *body,
        pl.lit(',"time":"'),
        pl.col("__time").dt.strftime(ISO_MS),
        pl.lit('"'),
        pl.when(props.struct.field("json").is_not_null()).then(
            pl.lit(',"properties":') + props.struct.field("json")
        ),
        pl.lit("}"),
        ignore_nulls=True,
    )
    good = (
        rows.filter(ok & pl.col("__first"))
        .select(
            pl.col(ident_col).alias(id_column),
            pl.col("__external_id").alias("external_id"),
            "_file",
            "_row",
            obj.alias("object"),
            (1 + props.struct.field("n_keys").fill_null(0)).cast(pl.Int64).alias("data_points"),
        )
        .with_columns(plh.col("object").nchash.xxh3_64().alias("fingerprint"))
        .select(id_column, "external_id", "_file", "_row", "object", "fingerprint", "data_points")
    )
    reason, value = _failure_reason_and_value(checks, schema)
    rejects = _rejects_frame(
        rows.filter(~ok | ~pl.col("__first")),
        dataset,
        pl.col(ident_col),
        None,
        pl.when(~ok).then(value),
        pl.when(~ok).then(reason).otherwise(pl.lit(duplicate(id_column))),
    )
    return Normalized(good, _combine([rejects]))


def _properties(schema: pl.Schema, reserved: Sequence[str]) -> pl.Expr:
    """`properties` as {json, n_keys, error}: a struct column, or JSON object text (CSV, NDJSON)."""
    dtype = schema.get("properties")
    if dtype is None or dtype == pl.Null:
        return pl.lit(None, dtype=OBJECT_DTYPE)
    col = pl.col("properties")
    if isinstance(dtype, pl.Struct):
        return object_from_struct(col, dtype, reserved)
    if dtype == pl.String:
        return object_from_text(blank_to_null(col), reserved)
    wrong = pl.struct(
        json=pl.lit(None, pl.String), n_keys=pl.lit(None, pl.Int64), error=pl.lit(BAD_PROPERTIES_TYPE)
    )
    return pl.when(col.is_not_null()).then(wrong).otherwise(pl.lit(None, dtype=OBJECT_DTYPE))


# --- push tokens --------------------------------------------------------------------------------------


def normalize_push_tokens(lf: pl.LazyFrame, *, files: Sequence[str] = (), create_aliases: bool = False
                          ) -> Normalized:
    """One row per (app_id, token) (the last in file order) with its attributes object.

    A token without external_id is imported anonymously (`push_token_import`). A device_id outside
    8..255 bytes is dropped (the token still loads) and reported as a cell reject.
    """
    schema = _check_columns(lf, "push_tokens", ("app_id", "token"), files)
    _check_identifiers(lf, "push_tokens", files)
    eid, eid_checks = _external_id(schema, required=False)
    app_id, app_checks = _text("app_id", schema)
    token, token_checks = _text("token", schema)
    optional = {
        c: _as_text(c, schema[c]) if c in schema else pl.lit(None, pl.String)
        for c in ("device_id", "platform")
    }
    platform = pl.col("__platform")
    checks = [
        *app_checks,
        *token_checks,
        *eid_checks,
        Check(platform == "web", WEB_TOKEN, "platform"),
        Check(platform.is_not_null() & ~platform.is_in(PLATFORMS), BAD_PLATFORM, "platform"),
    ]
    ok = pl.col("__fail").is_null()
    rows = (
        lf.with_columns(
            eid.alias("__external_id"),
            app_id.alias("__app_id"),
            token.alias("__token"),
            optional["device_id"].alias("__device_id"),
            optional["platform"].str.to_lowercase().alias("__platform"),
        )
        .with_columns(_first_failure(checks).alias("__fail"))
        # Failed rows sort before valid ones of the same pair: the last row of a pair is its last valid row.
        .sort([pl.col("__app_id"), pl.col("__token"), ok, pl.col("_file"), pl.col("_row")])
        .with_columns(_last_of_run("__app_id", "__token").alias("__latest"))
    )
    winner = ok & pl.col("__latest")
    device = pl.col("__device_id")
    bad_device = device.is_not_null() & ~device.str.len_bytes().is_between(8, 255)
    sent_device = pl.when(~bad_device).then(device)
    item = pl.concat_str(
        pl.lit('{"app_id":'),
        json_text(pl.col("__app_id")),
        pl.lit(',"token":'),
        json_text(pl.col("__token")),
        pl.when(~bad_device & device.is_not_null()).then(pl.lit(',"device_id":') + json_text(device)),
        pl.lit("}"),
        ignore_nulls=True,
    )
    owner = (
        pl.when(pl.col("__external_id").is_null())
        .then(pl.lit('{"push_token_import":true'))
        .otherwise(pl.lit("{") + identity.fragment(pl.col("__external_id"), create_aliases=create_aliases))
    )
    good = rows.filter(winner).select(
        pl.col("__external_id").alias("external_id"),
        pl.col("__app_id").alias("app_id"),
        pl.col("__token").alias("token"),
        sent_device.alias("device_id"),
        platform.alias("platform"),
        "_file",
        "_row",
        pl.concat_str(owner, pl.lit(',"push_tokens":['), item, pl.lit("]}")).alias("object"),
    )
    # Never the token itself: the key names the app and the row.
    key = pl.concat_str(pl.lit("app_id="), pl.col("__app_id").fill_null("?"), pl.lit(" row "), pl.col("_row"))
    reason, value = _failure_reason_and_value(checks, schema)
    device_shown = _reject_value("device_id", schema["device_id"]) if "device_id" in schema else pl.lit(None)
    rejects = rows.filter(~winner | bad_device).select(
        pl.lit("push_tokens").alias("dataset"),
        key.alias("key"),
        pl.when(winner).then(pl.lit("device_id")).alias("column"),
        pl.when(~ok).then(value).when(winner).then(device_shown).cast(pl.String).alias("value"),
        pl.when(~ok)
        .then(reason)
        .when(~winner)
        .then(pl.lit(DUPLICATE_TOKEN))
        .otherwise(pl.lit(BAD_DEVICE_ID))
        .alias("reason"),
        pl.col("_file").alias("file"),
        pl.col("_row").alias("row"),
    )
    return Normalized(good, _combine([rejects]))


# --- checks shared by the datasets --------------------------------------------------------------------


def _check_columns(
    lf: pl.LazyFrame, dataset: str, required: Sequence[str], files: Sequence[str]
) -> pl.Schema:
    schema = lf.collect_schema()
    where = f" in {', '.join(files[:3])}{' and more' if len(files) > 3 else ''}" if files else ""
    for c in ("_file", "_row"):
        if c not in schema:
            raise NormalizeError(
                f"{dataset}: the frame has no {c!r} column: scan the export with connectors.sources.scan_folder"
            )
    for c in required:
        if c not in schema:
            raise NormalizeError(
                f"{dataset}: required column {c!r} is missing{where}: add it to the export "
                f"or map the warehouse column onto {c!r}"
            )
    return schema


def _external_id(schema: pl.Schema, *, required: bool) -> tuple[pl.Expr, list[Check]]:
    """The row's user key (transforms/identity.py; stored in `__external_id`) and its checks.

    The identifier is the first present of external_id, user alias (alias_name and alias_label), email,
    phone; the chosen one is validated (a bad email or phone rejects the row: it names no user).
    """
    text = pl.col("__external_id")
    columns = {c: _as_text(c, schema[c]) if c in schema else pl.lit(None, pl.String) for c in identity.COLUMNS}
    eid, name, label = columns["external_id"], columns["alias_name"], columns["alias_label"]
    email = columns["email"].str.to_lowercase()
    phone = columns["phone"].str.replace_all(r"[\s\-().]", "")
    key = (
        pl.when(eid.is_not_null()).then(eid)
        .when(name.is_not_null() & label.is_not_null()).then(identity.encode(identity.USER_ALIAS, name, label))
        .when(email.is_not_null()).then(identity.encode(identity.EMAIL, email))
        .when(phone.is_not_null()).then(identity.encode(identity.PHONE, phone))
    )
    kind = identity.kind_of(text)
    present = {c: _present(c, schema[c]) if c in schema else pl.lit(False) for c in identity.COLUMNS}
    any_present = pl.any_horizontal(list(present.values()))
    checks = [
        Check(present["external_id"] & eid.is_null(), not_text("external_id"), "external_id"),
        Check(eid.str.len_bytes() > MAX_EXTERNAL_ID_BYTES, EXTERNAL_ID_TOO_LONG),
        Check(eid.str.starts_with(identity.SEP), RESERVED_EXTERNAL_ID),
        Check(text.is_null() & (present["alias_name"] ^ present["alias_label"]), HALF_ALIAS),
        Check((kind == identity.USER_ALIAS)
              & (name.str.contains(identity.SEP, literal=True) | label.str.contains(identity.SEP, literal=True)),
              RESERVED_ALIAS),
        Check((kind == identity.EMAIL) & ~email.str.contains(identity.EMAIL_PATTERN), BAD_EMAIL_ID),
        Check((kind == identity.PHONE) & ~phone.str.contains(identity.E164), BAD_PHONE_ID),
    ]
    if required:
        checks.insert(0, Check(~any_present, MISSING_IDENTIFIER))
        checks.append(Check(text.is_null(), MISSING_IDENTIFIER))
    return key, checks


def _check_identifiers(lf: pl.LazyFrame, dataset: str, files: Sequence[str]) -> None:
    """A dataset needs at least one identifier column (docs/identity.md)."""
    schema = lf.collect_schema()
    if not any(c in schema for c in identity.COLUMNS):
        where = f" in {', '.join(files[:3])}{' and more' if len(files) > 3 else ''}" if files else ""
        raise NormalizeError(
            f"{dataset}: no identifier column{where}: add external_id, alias_name and alias_label, email or "
            "phone to the export, or map a warehouse column onto one of them"
        )


def _text(column: str, schema: pl.Schema, max_len: int | None = None) -> tuple[pl.Expr, list[Check]]:
    """A required text column (stored in `__{column}`) and its checks: present, text, not too long."""
    dtype = schema[column]
    text = pl.col(f"__{column}")
    checks = [
        Check(~_present(column, dtype), missing(column)),
        Check(text.is_null(), not_text(column), column),
    ]
    if max_len is not None:
        checks.append(Check(text.str.len_chars() > max_len, too_long(column), column))
    return _as_text(column, dtype), checks


def _first_of_run(*columns: str) -> pl.Expr:
    """On a frame sorted by `columns`: the row starts a run of equal keys (cheaper than hashing)."""
    return pl.any_horizontal([pl.col(c).ne_missing(pl.col(c).shift(1)) for c in columns]).fill_null(True)


def _last_of_run(*columns: str) -> pl.Expr:
    """On a frame sorted by `columns`: the row ends a run of equal keys."""
    return pl.any_horizontal([pl.col(c).ne_missing(pl.col(c).shift(-1)) for c in columns]).fill_null(True)


def _first_failure(checks: Sequence[Check]) -> pl.Expr:
    """Index of the first check a row fails (Int32), null when it passes them all."""
    return pl.coalesce(
        [pl.when(c.fails.fill_null(False)).then(pl.lit(i, pl.Int32)) for i, c in enumerate(checks)]
    )


def _failure_reason_and_value(checks: Sequence[Check], schema: pl.Schema) -> tuple[pl.Expr, pl.Expr]:
    """Reason and shown value of the check a row failed (`__fail`); null for rows that passed."""
    failed = pl.col("__fail")
    reason = value = None
    for i, c in enumerate(checks):
        r = c.reason if isinstance(c.reason, pl.Expr) else pl.lit(c.reason)
        v = _check_value(c.value, schema)
        reason = (pl.when(failed == i) if reason is None else reason.when(failed == i)).then(r)
        value = (pl.when(failed == i) if value is None else value.when(failed == i)).then(v)
    return reason.cast(pl.String), value.cast(pl.String)


def _check_value(value: str | pl.Expr | None, schema: pl.Schema) -> pl.Expr:
    if value is None:
        return pl.lit(None, pl.String)
    if isinstance(value, str):
        # An optional column the export leaves out (push_tokens without `platform`) has no value to show.
        return _reject_value(value, schema[value]) if value in schema else pl.lit(None, pl.String)
    return _short(value)


def _reject_value(name: str, dtype: pl.DataType) -> pl.Expr:
    """A cell's original value as text for a reject; null for personal data and values over 100 chars."""
    if name in PERSONAL_COLUMNS or isinstance(dtype, (pl.Binary, pl.Object, pl.Duration)):
        return pl.lit(None, pl.String)
    col = pl.col(name)
    if isinstance(dtype, (pl.List, pl.Array, pl.Struct)):
        return _short(json_text(braze_ready(col, dtype)))
    return _short(col.cast(pl.String))


def _short(text: pl.Expr) -> pl.Expr:
    return pl.when(text.str.len_chars() <= MAX_REJECT_VALUE).then(text)


def _rejects_frame(
    lf: pl.LazyFrame,
    dataset: str,
    key: pl.Expr,
    column: str | None,
    value: pl.Expr | None,
    reason: pl.Expr,
) -> pl.LazyFrame:
    return lf.select(
        pl.lit(dataset, pl.String).alias("dataset"),
        key.cast(pl.String).alias("key"),
        pl.lit(column, pl.String).alias("column"),
        (value if value is not None else pl.lit(None)).cast(pl.String).alias("value"),
        reason.cast(pl.String).alias("reason"),
        pl.col("_file").cast(pl.String).alias("file"),
        pl.col("_row").cast(pl.Int64).alias("row"),
    )


def _combine(frames: list[pl.LazyFrame]) -> pl.LazyFrame:
    return pl.concat(frames, how="vertical").sort(["file", "row", "column", "reason"], nulls_last=False)


# --- typed views of a column --------------------------------------------------------------------------


def _present(name: str, dtype: pl.DataType) -> pl.Expr:
    """The cell holds a value (blank text counts as empty); never null."""
    if dtype == pl.String:
        return (pl.col(name).str.strip_chars().str.len_bytes() > 0).fill_null(False)
    return pl.col(name).is_not_null()


def _trimmed_apart(schema: pl.Schema) -> pl.Expr:
    """Rows of one (trimmed) external_id whose ids as written differ only by surrounding whitespace."""
    if schema.get("external_id") != pl.String:
        return pl.lit(False)
    return (pl.col("external_id").n_unique().over("__external_id") > 1).fill_null(False)


def _as_text(name: str, dtype: pl.DataType) -> pl.Expr:
    """Trimmed text of a column meant to hold text or an id; null when blank or not representable.

    Integers become their digits (an external_id stored as a Parquet integer); whole floats too, since
    pandas turns an integer column with nulls into floats.
    """
    col = pl.col(name)
    if dtype == pl.String:
        return blank_to_null(col)
    if isinstance(dtype, (pl.Categorical, pl.Enum)):
        return blank_to_null(col.cast(pl.String))
    if dtype.is_integer():
        return col.cast(pl.String)
    if dtype.is_float():
        return pl.when(col.is_finite() & (col == col.floor())).then(
            col.cast(pl.Int64, strict=False).cast(pl.String)
        )
    return pl.lit(None, pl.String)


def _as_float(name: str, dtype: pl.DataType) -> pl.Expr:
    col = pl.col(name)
    if dtype.is_numeric():
        return col.cast(pl.Float64)
    if dtype == pl.String:
        return blank_to_null(col).cast(pl.Float64, strict=False)
    return pl.lit(None, pl.Float64)


def _as_int(name: str, dtype: pl.DataType) -> pl.Expr:
    """Whole numbers as Int64 (`2`, `2.0`, `"2"`); anything else null."""
    if dtype.is_integer():
        return pl.col(name).cast(pl.Int64, strict=False)
    number = _as_float(name, dtype)
    return pl.when(number.is_finite() & (number == number.floor())).then(number.cast(pl.Int64, strict=False))


def _as_utc(name: str, dtype: pl.DataType) -> pl.Expr:
    """A time column as UTC Datetime: Datetime/Date as is (naive = UTC), ISO text parsed; else null."""
    col = pl.col(name)
    if dtype == pl.Date or isinstance(dtype, pl.Datetime):
        return to_utc(col, dtype).dt.cast_time_unit("us")
    if dtype == pl.String or isinstance(dtype, (pl.Categorical, pl.Enum)):
        return parse_datetime(blank_to_null(col.cast(pl.String)))
    return pl.lit(None, pl.Datetime("us", "UTC"))


def external_id_text(lf: pl.LazyFrame) -> pl.Expr:
    """The user key of a raw row (as `normalize_*` computes it: the external_id, else the alias, email or phone
    key of transforms/identity.py), for partitioning raw rows so that every row of one user lands in the same
    partition; null when the row has no identifier."""
    return _external_id(lf.collect_schema(), required=False)[0]
