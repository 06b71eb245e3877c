"""Type CSV text columns "as a careful human would", one decision per column.

A column becomes Boolean, Int64, Float64, Date or Datetime only when every non-empty value reads as that
kind; a column of mixed kinds stays text, and so does a numeric-looking column holding a value with a
leading zero (`007`, `01234`: zip codes and ids lose meaning as numbers). Empty cells are null.
The decision needs one look at all values (`infer_csv_types`, one aggregate collect); applying it
(`apply_csv_types`) is a pure lazy transform. The ISO date/time parsers are shared with `normalize`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import polars as pl

DATETIME_UTC = pl.Datetime("us", "UTC")

_BOOL = r"(?i)^(true|false)$"
_INT = r"^[+-]?[0-9]+$"
_NUMBER = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
_NON_FINITE = r"(?i)^[+-]?(nan|inf|infinity)$"
_LEADING_ZERO = r"^[+-]?0[0-9]"
_DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
_DATETIME = (
    r"^(?<date>[0-9]{4}-[0-9]{2}-[0-9]{2})"
    r"(?:[T ](?<hm>[0-9]{2}:[0-9]{2})(?::(?<s>[0-9]{2})(?<frac>\.[0-9]{1,9})?)?)?"
    r" ?(?<off>[Zz]|[+-][0-9]{2}(?::?[0-9]{2})?)?$"
)
_ORIGIN = ("_file", "_row")
_KINDS = ("n", "bool", "int_like", "int_fits", "number", "non_finite", "leading_zero", "date", "datetime")


def blank_to_null(expr: pl.Expr) -> pl.Expr:
    """Text with surrounding whitespace removed; empty text becomes null."""
    return expr.str.strip_chars().replace("", None)


def parse_date(text: pl.Expr) -> pl.Expr:
    """`YYYY-MM-DD` text as a Date; anything else (including impossible dates) is null."""
    return pl.when(text.str.contains(_DATE)).then(text.str.to_date("%Y-%m-%d", strict=False))


def parse_datetime(text: pl.Expr) -> pl.Expr:
    """ISO 8601 text (`2024-05-01`, `2024-05-01 12:00`, `...T12:00:00.5+02:00`, `...Z`) as UTC Datetime.

    No zone means UTC (Braze's rule); an offset is converted. Unparseable text is null.
    The regex runs once: the canonical text is assembled from the match's fields (`pl.field`), since
    Polars does not share a subexpression that sits under a when/then.
    """
    offset = (
        pl.field("off")
        .str.replace(r"^[Zz]$", "+00:00")
        .str.replace(r"^([+-][0-9]{2})$", "${1}:00")
        .str.replace(r"^([+-][0-9]{2})([0-9]{2})$", "${1}:${2}")
        .fill_null("+00:00")
    )
    canonical = pl.concat_str(
        pl.field("date"),
        pl.lit("T"),
        pl.field("hm").fill_null("00:00"),
        pl.lit(":"),
        pl.field("s").fill_null("00"),
        pl.field("frac").fill_null(""),
        offset,
    )
    iso = text.str.extract_groups(_DATETIME).struct.with_fields(canonical.alias("iso")).struct.field("iso")
    return iso.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%:z", time_unit="us", time_zone="UTC", strict=False)


def infer_csv_types(lf: pl.LazyFrame, exclude: Iterable[str] = ()) -> dict[str, pl.DataType]:
    """Decide a type for every text column of `lf` (except `exclude` and `_file`) from all its values."""
    skip = set(exclude) | set(_ORIGIN)
    columns = [c for c, t in lf.collect_schema().items() if t == pl.String and c not in skip]
    if not columns:
        return {}
    aggs = [
        agg.alias(f"{i}:{kind}") for i, c in enumerate(columns) for kind, agg in _counts(pl.col(c)).items()
    ]
    row = lf.select(aggs).collect().row(0, named=True)
    return {c: _decide({kind: row[f"{i}:{kind}"] for kind in _KINDS}) for i, c in enumerate(columns)}


def apply_csv_types(lf: pl.LazyFrame, types: Mapping[str, pl.DataType]) -> pl.LazyFrame:
    """Cast the text columns named in `types` to their decided type; blank cells become null."""
    schema = lf.collect_schema()
    casts = [_cast(pl.col(c), dtype).alias(c) for c, dtype in types.items() if schema.get(c) == pl.String]
    return lf.with_columns(casts) if casts else lf


def _counts(col: pl.Expr) -> dict[str, pl.Expr]:
    v = blank_to_null(col)
    return {
        "n": v.is_not_null().sum(),
        "bool": v.str.contains(_BOOL).sum(),
        "int_like": v.str.contains(_INT).sum(),
        "int_fits": (v.str.contains(_INT) & v.cast(pl.Int64, strict=False).is_not_null()).sum(),
        "number": v.str.contains(_NUMBER).sum(),
        "non_finite": v.str.contains(_NON_FINITE).sum(),
        "leading_zero": v.str.contains(_LEADING_ZERO).sum(),
        "date": parse_date(v).is_not_null().sum(),
        "datetime": parse_datetime(v).is_not_null().sum(),
    }


def _decide(k: dict[str, int]) -> pl.DataType:
    n = k["n"]
    if n == 0:
        return pl.String()
    if k["bool"] == n:
        return pl.Boolean()
    if k["number"] > 0 and k["number"] + k["non_finite"] == n and k["leading_zero"] == 0:
        if k["int_like"] == n:
            # An integer too large for Int64 (a 20-digit id) is an identifier, not a quantity.
            return pl.Int64() if k["int_fits"] == n else pl.String()
        return pl.Float64()
    if k["date"] == n:
        return pl.Date()
    if k["datetime"] == n:
        return DATETIME_UTC
    return pl.String()


def _cast(col: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    v = blank_to_null(col)
    if dtype == pl.Boolean:
        return v.str.to_lowercase() == "true"
    if dtype.is_integer() or dtype.is_float():
        return v.cast(dtype, strict=False)
    if dtype == pl.Date:
        return parse_date(v)
    if isinstance(dtype, pl.Datetime):
        parsed = parse_datetime(v).dt.cast_time_unit(dtype.time_unit or "us")
        if dtype.time_zone is None:
            return parsed.dt.replace_time_zone(None)
        return parsed.dt.convert_time_zone(dtype.time_zone)
    return pl.when(v.is_not_null()).then(col)
