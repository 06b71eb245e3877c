"""The export's identity requests, validated: `identifies` (alias_name, alias_label, external_id: the alias-only
user gets that external_id) and `external_id_renames` (current_external_id, new_external_id).

Pure and lazy. Each returns `Normalized(good, rejects)`: `good` has `from_key`, `to_key` (user keys of
transforms/identity.py: the alias's key -> the external_id; the current id -> the new one), `_file`, `_row`,
one row per `from_key` (the first in file order); rejects use the common schema with a reason.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from transforms import identity
from transforms.normalize import (
    EXTERNAL_ID_TOO_LONG,
    HALF_ALIAS,
    MAX_EXTERNAL_ID_BYTES,
    RESERVED_ALIAS,
    RESERVED_EXTERNAL_ID,
    Check,
    Normalized,
    NormalizeError,
    _as_text,
    _check_columns,
    _combine,
    _first_failure,
    _first_of_run,
    _present,
    _rejects_frame,
    missing,
    not_text,
)

SAME_IDS = "current_external_id and new_external_id are the same"


def _text(schema: pl.Schema, column: str) -> pl.Expr:
    return _as_text(column, schema[column])


def _id_checks(schema: pl.Schema, column: str) -> list[Check]:
    text = _text(schema, column)
    return [
        Check(~_present(column, schema[column]), missing(column)),
        Check(text.is_null(), not_text(column), column),
        Check(text.str.len_bytes() > MAX_EXTERNAL_ID_BYTES, f"{column}: {EXTERNAL_ID_TOO_LONG}"),
        Check(text.str.starts_with(identity.SEP), f"{column}: {RESERVED_EXTERNAL_ID}"),
    ]


def identify_requests(lf: pl.LazyFrame, *, files: Sequence[str] = ()) -> Normalized:
    """`identifies` rows: each alias (both parts) with the external_id it is to be identified by."""
    schema = _check_columns(lf, "identifies", ("alias_name", "alias_label", "external_id"), files)
    name, label = _text(schema, "alias_name"), _text(schema, "alias_label")
    checks = [
        Check(name.is_null() | label.is_null(), HALF_ALIAS),
        Check(name.str.contains(identity.SEP, literal=True) | label.str.contains(identity.SEP, literal=True),
              RESERVED_ALIAS),
        *_id_checks(schema, "external_id"),
    ]
    return _requests(lf, "identifies", identity.encode(identity.USER_ALIAS, name, label),
                     _text(schema, "external_id"), checks, "alias")


def rename_requests(lf: pl.LazyFrame, *, files: Sequence[str] = ()) -> Normalized:
    """`external_id_renames` rows: each current external_id with its new one."""
    schema = _check_columns(lf, "external_id_renames", ("current_external_id", "new_external_id"), files)
    current, new = _text(schema, "current_external_id"), _text(schema, "new_external_id")
    checks = [*_id_checks(schema, "current_external_id"), *_id_checks(schema, "new_external_id"),
              Check(current == new, SAME_IDS)]
    return _requests(lf, "external_id_renames", current, new, checks, "current_external_id")


def _requests(lf: pl.LazyFrame, dataset: str, from_key: pl.Expr, to_key: pl.Expr, checks: list[Check],
              noun: str) -> Normalized:
    ok = pl.col("__fail").is_null()
    rows = (
        lf.with_columns(from_key.alias("from_key"), to_key.alias("to_key"))
        .with_columns(_first_failure(checks).alias("__fail"))
        .sort([pl.col("from_key"), ~ok, pl.col("_file"), pl.col("_row")], nulls_last=True)
        .with_columns(_first_of_run("from_key").alias("__first"))
    )
    good = rows.filter(ok & pl.col("__first")).select("from_key", "to_key", "_file", "_row")
    reason = pl.coalesce([pl.when(pl.col("__fail") == i).then(pl.lit(c.reason)) for i, c in enumerate(checks)])
    rejects = _rejects_frame(
        rows.filter(~ok | ~pl.col("__first")), dataset, identity.display(pl.col("from_key")), None, None,
        pl.when(~ok).then(reason).otherwise(pl.lit(f"duplicate {noun}; requested once")),
    )
    return Normalized(good, _combine([rejects]))


__all__ = ["SAME_IDS", "NormalizeError", "identify_requests", "rename_requests"]
