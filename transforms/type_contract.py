"""Column types are a contract: an attribute keeps the JSON type Braze first acknowledged for it.

Braze types a custom attribute by the values it receives, and segments, Liquid and exports depend on that
type. One bad cell must not retype a column: a CSV column `orders_count` of 1, 2, 3 that gets one `n/a`
tonight is typed as text by `csv_typing`, and every user's count would be resent as a string. So, after
normalization, each cell of an attribute with a contract is checked against it (pure, lazy): a string that
reads as the contract's number or boolean is sent as that (the CSV case), any other cell of another type is
left out (listed in `_dropped`, so the diff treats it as "no information", never as "became empty") and
rejected with a reason. A deliberate change is accepted by name (`--accept-type-change`), which drops the
attribute's contract before the run; the type Braze acknowledges next becomes the new one.
"""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

KINDS = ("string", "number", "boolean", "array", "object")
# The kind of an attribute whose type change was accepted for the next run: no contract until Braze
# acknowledges its new type.
ACCEPTED = "accepted"
_NUMBER = r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$"
SHOWN_MAX = 100
REJECT_COLUMNS = ("dataset", "key", "column", "value", "reason", "file", "row")


_FIRST = {"string": ['"'], "boolean": ["t", "f"], "array": ["["], "object": ["{"],
          "number": ["-", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]}
_ANY_FIRST = [c for firsts in _FIRST.values() for c in firsts]


def json_kind(text: pl.Expr) -> pl.Expr:
    """The JSON type of canonical Braze JSON text (null for null), told by its first character."""
    first = text.str.slice(0, 1)
    kind = pl.when(first.is_in(_FIRST[KINDS[0]])).then(pl.lit(KINDS[0]))
    for name in KINDS[1:]:
        kind = kind.when(first.is_in(_FIRST[name])).then(pl.lit(name))
    return kind


def conforms(text: pl.Expr, want: str) -> pl.Expr:
    """`json_kind(text)` is `want` or null (null text, or not one of the JSON kinds): one comparison of the
    first character instead of `json_kind`'s chain."""
    return first_conforms(text.str.slice(0, 1), want)


def first_conforms(first: pl.Expr, want: str) -> pl.Expr:
    """`conforms` given the value's first character (null, or any character that starts no JSON kind, for a
    null value)."""
    return (first.is_in(_FIRST[want]) | ~first.is_in(_ANY_FIRST)).fill_null(True)


def _coerced(text: pl.Expr, kind: pl.Expr, want: str) -> pl.Expr:
    """The value in the wanted type when it reads as one (null when it does not): a string holding a number or
    a boolean (`"12"` for a number), or a number or boolean where text is wanted (`1500` as `"1500"`)."""
    inner = text.str.strip_prefix('"').str.strip_suffix('"').str.strip_chars()
    if want == "number":
        return pl.when((kind == "string") & inner.str.contains(_NUMBER)).then(inner)
    if want == "boolean":
        lowered = inner.str.to_lowercase()
        return pl.when((kind == "string") & lowered.is_in(["true", "false"])).then(lowered)
    if want == "string":
        return pl.when(kind.is_in(["number", "boolean"])).then(pl.concat_str(pl.lit('"'), text, pl.lit('"')))
    return pl.lit(None, pl.String)


def enforce_types(good: pl.LazyFrame, contract: Mapping[str, str]) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """(users with every attribute in its contract type, rejects of the cells left out).

    `good` is `normalize_users`' output (one JSON text column per attribute, `_dropped`, `_file`, `_row`);
    `contract` maps attribute names to their acknowledged kind (KINDS).
    """
    schema = good.collect_schema()
    columns = [c for c in contract if c in schema and contract[c] in KINDS]
    if not columns:
        return good, pl.LazyFrame(schema={c: pl.String for c in REJECT_COLUMNS[:-1]} | {"row": pl.Int64})
    # Most rows hold every value in its contract type and pass as they are; only the others are coerced or
    # left out below (2-3x faster on a partition of 100,000 users). The row order is kept.
    typed = pl.all_horizontal([pl.col(c).is_null() | pl.col(c).str.slice(0, 1).is_in(_FIRST[contract[c]])
                               for c in columns])
    indexed = good.with_row_index("__i").with_columns(__typed=typed)
    as_they_are = indexed.filter(pl.col("__typed")).drop("__typed")
    good = indexed.filter(~pl.col("__typed")).drop("__typed")
    fixed, bad = {}, {}
    for c in columns:
        value, want = pl.col(c), contract[c]
        kind = json_kind(value)
        coerced = _coerced(value, kind, want)
        fixed[c] = pl.when(value.is_null() | (kind == want)).then(value).otherwise(coerced)
        bad[c] = value.is_not_null() & (kind != want) & coerced.is_null()
    left_out = pl.concat_list([pl.when(bad[c]).then(pl.lit(c)) for c in columns]).list.drop_nulls()
    marked = good.with_columns(
        *[bad[c].alias(f"__bad__{c}") for c in columns],
        *[pl.col(c).alias(f"__was__{c}") for c in columns],
    ).with_columns(
        *[fixed[c].alias(c) for c in columns],
        pl.concat_list([pl.col("_dropped"), left_out]).list.unique(maintain_order=True).alias("_dropped"),
    )
    entries = [
        pl.when(pl.col(f"__bad__{c}")).then(pl.struct(
            pl.lit(c).alias("column"),
            _shown(pl.col(f"__was__{c}")).alias("value"),
            pl.concat_str(pl.lit(f"would change the type of {c} from {contract[c]} (the type Braze acknowledged) "
                                 "to "), json_kind(pl.col(f"__was__{c}")),
                          pl.lit(f": cell left out; to change the type on purpose, pass --accept-type-change {c}"),
                          ).alias("reason"),
        ))
        for c in columns
    ]
    any_bad = pl.any_horizontal([pl.col(f"__bad__{c}") for c in columns])
    rejects = (
        marked.filter(any_bad)
        .select("external_id", "_file", "_row", pl.concat_list(entries).list.drop_nulls().alias("__entry"))
        .explode("__entry")
        .select(
            pl.lit("users").alias("dataset"),
            pl.col("external_id").alias("key"),
            pl.col("__entry").struct.field("column"),
            pl.col("__entry").struct.field("value"),
            pl.col("__entry").struct.field("reason"),
            pl.col("_file").alias("file"),
            pl.col("_row").alias("row"),
        )
    )
    out = marked.drop([f"__bad__{c}" for c in columns] + [f"__was__{c}" for c in columns])
    out = pl.concat([as_they_are, out], how="vertical_relaxed").sort("__i").drop("__i")
    return out, rejects


def enforce(norm, contract: Mapping[str, str]):
    """`enforce_types` on a `normalize.Normalized` (good, rejects): the same pair with the cells left out."""
    if not contract:
        return norm
    good, rejects = enforce_types(norm.good, contract)
    return type(norm)(good, pl.concat([norm.rejects, rejects], how="diagonal_relaxed"))


def _shown(text: pl.Expr) -> pl.Expr:
    """The left-out value as the user wrote it (quotes removed), null above SHOWN_MAX characters."""
    inner = text.str.strip_prefix('"').str.strip_suffix('"')
    return pl.when(inner.str.len_chars() <= SHOWN_MAX).then(inner)


def contract_of(users_next: pl.LazyFrame, attributes: list[str]) -> pl.LazyFrame:
    """(attribute, kind) of the first non-null value of each attribute: what a commit adds to the contract."""
    if not attributes:
        return pl.LazyFrame(schema={"attribute": pl.String, "kind": pl.String})
    firsts = users_next.select(
        [json_kind(pl.col(c)).drop_nulls().first().alias(c) for c in attributes]
    )
    return firsts.unpivot(variable_name="attribute", value_name="kind").drop_nulls("kind")
