"""A `catalogs/<name>` export as Braze catalog items, and what changed against the acknowledged snapshot
(pure, lazy: LazyFrames in, LazyFrames out).

An export row is one item: an `id` column (Braze's item id) and one column per catalog field. Braze's rules
(braze.com/docs/api/endpoints/catalogs/catalog_items/asynchronous/, "Troubleshooting"): ids are strings of at
most 250 letters, numbers, hyphens and underscores, unique; a value is at most 5,000 characters; object keys
hold no `.` or `$`. A row that breaks them is rejected with its reason; a repeated id is sent once (the first).
Each field's value is kept as its JSON text, so a change is a text comparison with the snapshot.

The diff: an id the snapshot lacks is created (POST, every field given); an item whose fields changed is
edited (PATCH: the id and the changed fields only, `null` for a value that became empty); an id the snapshot
holds and tonight's export does not is deleted (DELETE), only when the caller asks for deletes.
"""

from __future__ import annotations

import json

import polars as pl
import polars_hash  # noqa: F401  (registers the stable `.nchash` namespace)

from transforms.jsontext import compact_json, json_text
from transforms.normalize import Normalized, _as_text, _rejects_frame

ID = "id"
MAX_ID = 250
MAX_VALUE = 5000
ITEMS_PER_REQUEST = 50  # every asynchronous catalog item endpoint
_ID_CHARS = r"^[A-Za-z0-9_-]+$"
ID_MISSING = "id is missing or not text: every catalog item needs an id"
ID_TOO_LONG = f"id longer than {MAX_ID} characters; Braze rejects it"
ID_BAD_CHARS = "id holds characters other than letters, numbers, hyphens and underscores; Braze rejects it"
DUPLICATE_ID = "duplicate id; the first row in file order is sent"
BATCH_SCHEMA = {"batch_no": pl.Int64, "method": pl.Utf8, "n_items": pl.Int64, "body": pl.Utf8}


def braze_type(dtype: pl.DataType) -> str | None:
    """The catalog field type (GET /catalogs: string, number, boolean, time; arrays and objects) a column holds."""
    if dtype == pl.String or isinstance(dtype, (pl.Categorical, pl.Enum)):
        return "string"
    if dtype == pl.Boolean:
        return "boolean"
    if dtype.is_numeric():
        return "number"
    if dtype == pl.Date or isinstance(dtype, pl.Datetime):
        return "time"
    if isinstance(dtype, (pl.List, pl.Array)):
        return "array"
    if isinstance(dtype, pl.Struct):
        return "object"
    return None


def field_mismatch(catalog: str, schema: pl.Schema, braze_fields: list[dict] | None) -> str | None:
    """One line naming every field where the export and Braze's catalog disagree, or None when they match.
    `braze_fields`: the catalog's `fields` from GET /catalogs; None when Braze has no such catalog."""
    if braze_fields is None:
        return (f"catalog {catalog!r} does not exist in Braze: create it with its fields (dashboard or POST "
                "/catalogs) before syncing it")
    theirs = {f["name"]: f["type"] for f in braze_fields}
    ours = {c: braze_type(t) for c, t in schema.items() if c not in ("_file", "_row")}
    problems = []
    for name, kind in ours.items():
        if name == ID:
            continue
        if name not in theirs:
            problems.append(f"field {name!r} of the export is not a field of the catalog")
        elif kind is None or (kind != theirs[name] and not (kind == "string" and theirs[name] == "time")):
            problems.append(f"field {name!r} is {kind or schema[name]} in the export but {theirs[name]} in Braze")
    problems += [f"field {name!r} of the catalog is missing from the export" for name in theirs
                 if name != ID and name not in ours]
    if not problems:
        return None
    return f"catalog {catalog!r} does not match Braze, nothing sent: " + "; ".join(problems)


def normalize_items(lf: pl.LazyFrame, catalog: str) -> Normalized:
    """Valid items (`id`, `_file`, `_row`, one JSON-text column per field, `fingerprint`) and rejected rows."""
    schema = lf.collect_schema()
    fields = [c for c in schema if c not in (ID, "_file", "_row")]
    dataset = f"catalogs/{catalog}"
    item_id = _as_text(ID, schema[ID]) if ID in schema else pl.lit(None, pl.String)
    values = {c: compact_json(pl.col(c), schema[c]) for c in fields}
    too_long = pl.any_horizontal([v.str.len_chars() > MAX_VALUE for v in values.values()]) if values else pl.lit(False)
    bad_keys = pl.any_horizontal([v.str.contains(r'"[^"]*[.$][^"]*":') for c, v in values.items()
                                  if isinstance(schema[c], (pl.Struct, pl.List))] or [pl.lit(False)])
    reason = (
        pl.when(pl.col("__id").is_null()).then(pl.lit(ID_MISSING))
        .when(pl.col("__id").str.len_chars() > MAX_ID).then(pl.lit(ID_TOO_LONG))
        .when(~pl.col("__id").str.contains(_ID_CHARS)).then(pl.lit(ID_BAD_CHARS))
        .when(too_long.fill_null(False)).then(pl.lit(f"a value is longer than {MAX_VALUE} characters; Braze rejects it"))
        .when(bad_keys.fill_null(False)).then(pl.lit("an object key holds '.' or '$'; Braze rejects it"))
    )
    rows = (lf.with_columns(item_id.alias("__id"), *(v.alias(f"__v_{c}") for c, v in values.items()))
            .with_columns(reason.alias("__reason"))
            .sort(pl.col("__reason").is_not_null(), "_file", "_row")
            .with_columns(__first=pl.col("__id").is_first_distinct() | pl.col("__id").is_null()))
    ok = pl.col("__reason").is_null() & pl.col("__first")
    good = rows.filter(ok).select(
        pl.col("__id").alias(ID), "_file", "_row", *(pl.col(f"__v_{c}").alias(c) for c in fields)
    ).with_columns(fingerprint=_fingerprint(fields)).sort(ID)
    bad = rows.filter(~ok)
    rejects = _rejects_frame(bad, dataset, pl.col("__id"), None, None,
                             pl.coalesce(pl.col("__reason"), pl.lit(DUPLICATE_ID)))
    return Normalized(good, rejects)


def _fingerprint(fields: list[str]) -> pl.Expr:
    """A stable hash of an item's field values (names included), to tell changed items from unchanged ones."""
    if not fields:
        return pl.lit(0, pl.UInt64)
    parts = [pl.lit(f"{name}=") + pl.col(name).fill_null("\x00") for name in sorted(fields)]
    return pl.concat_str(parts, separator="\x1f").nchash.xxh3_64()


def diff_items(tonight: pl.LazyFrame, acked: pl.LazyFrame, *, deletes: bool) -> pl.LazyFrame:
    """The item writes to send: `method` (POST | PATCH | DELETE), `id`, `item` (the JSON object sent)."""
    fields = [c for c in tonight.collect_schema() if c not in (ID, "_file", "_row", "fingerprint")]
    known = acked.collect_schema()
    before = acked.select(ID, *(pl.col(c).alias(f"__old_{c}") if c in known else pl.lit(None, pl.String)
                                .alias(f"__old_{c}") for c in fields), pl.lit(True).alias("__known"))
    j = tonight.join(before, on=ID, how="left")
    new = pl.col("__known").is_null()
    changed = [pl.col(c).ne_missing(pl.col(f"__old_{c}")) for c in fields]

    def obj(pieces: list[pl.Expr]) -> pl.Expr:
        return pl.concat_str([pl.lit('{"id":'), json_text(pl.col(ID)), *pieces, pl.lit("}")], ignore_nulls=True)

    full = [pl.when(pl.col(c).is_not_null()).then(pl.lit(f',{_key(c)}:') + pl.col(c)) for c in fields]
    edits = [pl.when(ch).then(pl.lit(f',{_key(c)}:') + pl.col(c).fill_null("null")) for c, ch in zip(fields, changed)]
    any_change = pl.any_horizontal(changed) if changed else pl.lit(False)
    writes = j.filter(new | any_change).select(
        pl.when(new).then(pl.lit("POST")).otherwise(pl.lit("PATCH")).alias("method"), ID,
        pl.when(new).then(obj(full)).otherwise(obj(edits)).alias("item"),
    )
    if not deletes:
        return writes
    gone = acked.select(ID).join(tonight.select(ID), on=ID, how="anti").select(
        pl.lit("DELETE").alias("method"), ID, pl.concat_str(pl.lit('{"id":'), json_text(pl.col(ID)), pl.lit("}")).alias("item"))
    return pl.concat([writes, gone])


def gone_count(tonight: pl.LazyFrame, acked: pl.LazyFrame) -> pl.LazyFrame:
    """How many acknowledged items tonight's export no longer has (one row, `gone`)."""
    return acked.select(ID).join(tonight.select(ID), on=ID, how="anti").select(pl.len().alias("gone"))


def pack(writes: pl.LazyFrame, size: int = ITEMS_PER_REQUEST) -> pl.LazyFrame:
    """Numbered requests of at most `size` items of one method each (creates, then edits, then deletes)."""
    order = pl.col("method").replace_strict({"POST": 0, "PATCH": 1, "DELETE": 2}, return_dtype=pl.Int8)
    ranked = writes.sort(order, ID).with_columns(
        __slot=(pl.int_range(pl.len()).over("method") // size), __order=order)
    batches = ranked.group_by("__order", "method", "__slot", maintain_order=True).agg(
        pl.len().cast(pl.Int64).alias("n_items"),
        pl.concat_str(pl.lit('{"items":['), pl.col("item").str.join(","), pl.lit("]}")).alias("body"),
        pl.col(ID).alias("ids"),
    ).sort("__order", "__slot")
    return batches.with_columns(batch_no=pl.int_range(pl.len(), dtype=pl.Int64)).select(
        "batch_no", "method", "n_items", "body", "ids")


def _key(name: str) -> str:
    """A field name as a JSON key."""
    return json.dumps(name, ensure_ascii=False)
