"""Rows that are valid but suspicious, flagged before they are sent (pure, lazy).

An export can be well-formed and still wrong: two rows with the same purchase id and different content
(price 2.0 and 999.0: only one can be true, and Braze cannot correct an occurrence once recorded), a time
in year 2200 or 9999 (a sentinel or a typo; Braze keeps it forever), a date of birth like 0001-01-01. Each
is named in the rejects file with its reason. `mode` decides what happens to it: `hold` (the default: the
row, or the dob cell, is not sent, so nothing irreversible happens on a guess) or `send` (sent as before,
and still listed, as a bad cell, so the summary counts it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Literal

import polars as pl

Mode = Literal["hold", "send"]
ID_COLUMNS = {"purchases": "purchase_id", "events": "event_id"}
_TIME_YEAR = r'"time":"([0-9]{4})-'


@dataclass(frozen=True)
class Rules:
    """What counts as suspicious: times after `horizon_year`, a dob before `min_dob_year` or after `today`."""

    mode: Mode = "hold"
    horizon_year: int = 2100
    min_dob_year: int = 1900
    today: date | None = None


def _how(rules: Rules) -> str:
    """What became of a suspicious row, for its reason."""
    if rules.mode == "hold":
        return "held: fix the export, or set BRAZE_MIGRATE_SUSPICIOUS=send to send such rows"
    return "sent anyway (BRAZE_MIGRATE_SUSPICIOUS=send)"


def _empty_rejects() -> pl.LazyFrame:
    return pl.LazyFrame(schema={"dataset": pl.String, "key": pl.String, "column": pl.String, "value": pl.String,
                                "reason": pl.String, "file": pl.String, "row": pl.Int64})


def check_occurrences(dataset: str, raw: pl.LazyFrame, good: pl.LazyFrame, rules: Rules
                      ) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """(the purchases/events to send, rejects of the suspicious ones) from the raw rows and the normalized ones.

    A conflicting duplicate is an id whose raw rows differ in anything but their position; normalization
    keeps the first, so the others are already rejected as duplicates and this names the conflict.
    """
    id_column = ID_COLUMNS[dataset]
    content = [c for c in raw.collect_schema().names() if c not in ("_file", "_row")]
    conflicts = (
        raw.group_by(id_column)
        .agg(variants=pl.struct(content).hash().n_unique(), rows=pl.len())
        .filter(pl.col("variants") > 1)
        .select(pl.col(id_column).cast(pl.String), "variants", "rows")
    )
    year = pl.col("object").str.extract(_TIME_YEAR, 1).cast(pl.Int32, strict=False)
    flagged = (
        good.join(conflicts, on=id_column, how="left")
        .with_columns(
            pl.when(pl.col("variants").is_not_null())
            .then(pl.format(f"{id_column} appears in {{}} rows with {{}} different contents; the first in file order "
                            "is the one sent", pl.col("rows"), pl.col("variants")))
            .when(year > rules.horizon_year)
            .then(pl.format(f"time in year {{}}, after the horizon ({rules.horizon_year})", year))
            .alias("__suspicious")
        )
    )
    rejects = flagged.filter(pl.col("__suspicious").is_not_null()).select(
        pl.lit(dataset).alias("dataset"),
        pl.col(id_column).alias("key"),
        pl.when(rules.mode == "send").then(
            pl.when(pl.col("variants").is_not_null()).then(pl.lit(id_column)).otherwise(pl.lit("time"))
        ).cast(pl.String).alias("column"),
        pl.when(pl.col("variants").is_null()).then(year.cast(pl.String)).alias("value"),
        pl.concat_str(pl.lit("suspicious: "), pl.col("__suspicious"), pl.lit(f"; {_how(rules)}")).alias("reason"),
        pl.col("_file").alias("file"),
        pl.col("_row").alias("row"),
    )
    kept = good if rules.mode == "send" else flagged.filter(pl.col("__suspicious").is_null()).select(
        good.collect_schema().names())
    return kept, rejects


def check_dob(good: pl.LazyFrame, rules: Rules) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """(users, rejects of impossible dates of birth): before `min_dob_year` or after `today`. Held: the cell
    is left out (`_dropped`: no information, the last acknowledged dob stays)."""
    if "dob" not in good.collect_schema().names():
        return good, _empty_rejects()
    text = pl.col("dob").str.strip_chars('"')
    born = text.str.to_date("%Y-%m-%d", strict=False)
    impossible = born.dt.year() < rules.min_dob_year
    if rules.today is not None:
        impossible = impossible | (born > pl.lit(rules.today))
    impossible = impossible.fill_null(False)
    rejects = good.filter(impossible).select(
        pl.lit("users").alias("dataset"),
        pl.col("external_id").alias("key"),
        pl.lit("dob").alias("column"),
        text.alias("value"),
        pl.lit(f"suspicious: dob before {rules.min_dob_year} or in the future; {_how(rules)}").alias("reason"),
        pl.col("_file").alias("file"),
        pl.col("_row").alias("row"),
    )
    if rules.mode == "send":
        return good, rejects
    held = good.with_columns(
        pl.when(impossible).then(pl.lit(None, pl.String)).otherwise(pl.col("dob")).alias("dob"),
        pl.when(impossible).then(pl.concat_list([pl.col("_dropped"), pl.lit(["dob"])]))
        .otherwise(pl.col("_dropped")).alias("_dropped"),
    )
    return held, rejects


def check(dataset: str, raw: pl.LazyFrame, norm, rules: Rules):
    """The suspicious-row checks of one dataset on a `normalize.Normalized` (good, rejects): the same pair,
    with held rows or cells moved out of `good` and every flag added to the rejects."""
    if dataset in ID_COLUMNS:
        good, flagged = check_occurrences(dataset, raw, norm.good, rules)
    elif dataset == "users":
        good, flagged = check_dob(norm.good, rules)
    else:
        return norm
    return type(norm)(good, pl.concat([norm.rejects, flagged], how="diagonal_relaxed"))
