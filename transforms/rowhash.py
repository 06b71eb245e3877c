"""Row hashes for skipping users a sync would leave unchanged (pure, lazy).

A nightly export repeats most users exactly. Whether a user is unchanged is a pure function of three
things: the user's raw export row, the user's acknowledged snapshot row, and everything else the planner
reads (the export's schema, the CSV types, the type contract, the suspicious-row rules, the code). So the
planner keeps a memo of that function (connectors/state/seen.py): (external_id, raw-row hash, snapshot-row
hash) of every user the full path found unchanged and clean, or whose object Braze acknowledged; and
tonight, a user whose two hashes match an entry is counted unchanged without being normalized or diffed.
Everything else the planner reads is folded into the memo's salt (braze_migrate/plan/seen.py): when any of it
changes, the memo is ignored and every user takes the full path once.

Polars' `hash` is stable within one Polars version (its version is part of the salt) and order-sensitive
over a struct's fields, so a value moved between two columns is a different row.
"""

from __future__ import annotations

import polars as pl

SEED = 20_261_203
POSITION = ("_file", "_row")


def raw_row_hash(schema: pl.Schema) -> pl.Expr:
    """One UInt64 per export row over every column but its position (file, row), in the export's order."""
    columns = [c for c in schema.names() if c not in POSITION]
    return pl.struct(columns).hash(SEED)


def values_hash(schema: pl.Schema) -> pl.Expr:
    """One UInt64 per snapshot row over its acknowledged values, columns in name order (parts written on
    different nights may order their columns differently)."""
    columns = sorted(c for c in schema.names() if c != "external_id")
    if not columns:
        return pl.lit(0, pl.UInt64)
    return pl.struct(columns).hash(SEED)
