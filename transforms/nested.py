"""Key-level changes of nested attributes: objects merged key by key, arrays of objects diffed by item id.

Braze bills one data point per nested key holding a value, and overwrites a nested object, or an item an
`$update` names, unless the attributes object says `"_merge_objects": true`; an array of objects is changed
item by item with `$add`, `$remove` and `$update`, applied in that order (docs/braze-fidelity.md names each
page). What changed is found by comparing tonight's JSON text of an attribute with the acknowledged one from
the snapshot.

Why orjson and not Polars here: the values of one attribute have different keys from row to row, and
Polars decodes JSON only into one fixed schema, which invents a `null` for every key a row does not have —
the very corruption this module exists to avoid. So each *distinct* (acknowledged, tonight) pair of texts
whose texts differ is compared once in one batch call per chunk (`map_batches`), like
`jsontext.object_from_text`; unchanged values never reach Python.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
import polars as pl

KEYED_ARRAY = re.compile(r"^(?P<name>.+)\[(?P<key>[^\[\]]+)\]$")
"""Column naming convention for an array of objects changed by item: `pets[id]` is attribute `pets`,
items identified by their `id` key (the mapping file's `arrays_of_objects` renames a column to this form)."""

CHANGE_DTYPE = pl.Struct({"text": pl.String, "data_points": pl.Int64, "mode": pl.String, "whole_points": pl.Int64})
"""`text`: the JSON to send for the attribute and `data_points` what it costs; `mode`: `merge` (a patch, or
item operations with an `$update`: valid only with `_merge_objects`), `set` (the whole value) or `ops` (item
operations without `$update`, valid with or without `_merge_objects`); `whole_points`: what sending the whole
value instead costs."""


def keyed_array(column: str) -> tuple[str, str] | None:
    """(attribute name, item id key) when `column` follows the `name[key]` convention, else None."""
    m = KEYED_ARRAY.match(column)
    return (m["name"], m["key"]) if m else None


def braze_name(column: str) -> str:
    """The attribute name Braze sees for a column (the convention's `[key]` suffix removed)."""
    keyed = keyed_array(column)
    return keyed[0] if keyed else column


def key_count(value: Any) -> int:
    """Data points of a nested value: one per key holding a value, at every depth. A key holding an object
    counts through that object's keys (Braze's example object with `play_analytics: {count,
    top_10_listeners}` and five other keys "counts as seven (7) data points", Nested custom attributes, "Data
    points"); a `{"$time": ...}` is a value; the objects of a list count their keys ("Creating a new array
    logs one data point for each attribute in an object", Array of objects, "Data points")."""
    if type(value) is dict:
        if _is_time(value):
            return 1
        return sum(key_count(v) if _holds_values(v) else 1 for v in value.values())
    if type(value) is list:
        return sum(key_count(v) for v in value if type(v) is dict)
    return 0


def _holds_values(value: Any) -> bool:
    """A value counted through its keys: a non-empty object that is not a date, or a list holding objects."""
    if type(value) is dict:
        return bool(value) and not _is_time(value)
    return type(value) is list and any(type(v) is dict for v in value)


def object_change(old: pl.Expr, new: pl.Expr) -> pl.Expr:
    """The change of a nested-object attribute from `old` to `new` JSON text, as CHANGE_DTYPE.

    Only keys whose value changed form the patch (mode `merge`, data points = keys in the patch) when
    nothing was removed at any depth; otherwise, or when there was no acknowledged object, the whole
    value (mode `set`). Rows where `new` is null give null; equal values (even written in another key
    order) give a null `text`.
    """
    return _changes(old, new, _object_change)


def array_change(old: pl.Expr, new: pl.Expr, key: str) -> pl.Expr:
    """The change of an array of objects identified by `key`, as CHANGE_DTYPE.

    `$add` for new ids (the whole item), `$remove` for ids gone, `$update` with only the changed keys for
    changed items (mode `merge`: to be sent with `_merge_objects`, or the array whole); an item that lost a
    key is removed by a key and value only it holds and added again whole. Every `$remove` matches only the
    items it means after the Add, so Braze's Add → Remove → Update order gives the export's items (a re-added
    item moves to the end). The whole array (mode `set`, billed per value) on first load, when no such key
    exists, or when ids are missing or repeated.
    """
    return _changes(old, new, lambda o, n: _array_change(o, n, key))


def groups_change(old: pl.Expr, new: pl.Expr) -> pl.Expr:
    """The change of `subscription_groups` (a JSON list of {subscription_group_id, subscription_state}), as
    CHANGE_DTYPE: only the groups whose state is new or changed (Braze leaves unnamed groups alone; a
    group gone from the export is not unsubscribed). Not billable: 0 data points."""
    return _changes(old, new, _groups_change)


GROUP_STATES = ("subscribed", "unsubscribed")
GROUPS_DTYPE = pl.Struct({"json": pl.String, "error": pl.String})
BAD_GROUPS = (
    "subscription_groups must be a list of {subscription_group_id (or id), subscription_state (or state): "
    "subscribed or unsubscribed}"
)


CONFLICTING_GROUPS = ("subscription_groups names the same group twice with different states (subscribed and "
                      "unsubscribed): keep one entry per group in the export")


def groups_from_json(text: pl.Expr) -> pl.Expr:
    """A `subscription_groups` cell (JSON text of a list) as GROUPS_DTYPE: the canonical list Braze takes
    (`subscription_group_id`, `subscription_state`; sorted by id, one entry per id, states lower case), or
    `error` when an entry has no id or a state other than subscribed/unsubscribed. Each distinct text is
    checked once (few distinct values per export)."""
    return text.map_batches(_canonical_groups, return_dtype=GROUPS_DTYPE, is_elementwise=True)


def _canonical_groups(s: pl.Series) -> pl.Series:
    distinct = s.drop_nulls().unique()
    out = [_canonical_group_list(t) for t in distinct.to_list()]
    answers = pl.DataFrame([pl.Series("json", [o[0] for o in out], dtype=pl.String),
                            pl.Series("error", [o[1] for o in out], dtype=pl.String)]).to_struct(s.name)
    return s.replace_strict(distinct, answers, default=None, return_dtype=GROUPS_DTYPE)


def _canonical_group_list(text: str) -> tuple[str | None, str | None]:
    value = _loads(text)
    if type(value) is not list:
        return None, BAD_GROUPS
    groups: dict[str, str] = {}
    for entry in value:
        if type(entry) is not dict:
            return None, BAD_GROUPS
        gid = entry.get("subscription_group_id", entry.get("id"))
        state = entry.get("subscription_state", entry.get("state"))
        state = state.strip().lower() if type(state) is str else state
        if type(gid) is not str or not gid.strip() or state not in GROUP_STATES:
            return None, BAD_GROUPS
        if groups.get(gid.strip(), state) != state:
            return None, CONFLICTING_GROUPS
        groups[gid.strip()] = state
    if not groups:
        return None, None
    listed = [{"subscription_group_id": g, "subscription_state": groups[g]} for g in sorted(groups)]
    return orjson.dumps(listed).decode(), None


def array_problem(key: str) -> str:
    return (f"not a list of objects each with a unique {key!r} (string or whole number): an array of objects "
            f"is changed item by item, identified by {key!r}")


def array_from_json(text: pl.Expr, key: str) -> pl.Expr:
    """JSON text of an array of objects (a CSV cell) as GROUPS_DTYPE-shaped {json, error}: re-encoded with
    null-valued keys left out (as `jsontext.compact_json` does for structs), or `error` when it is not a list
    of objects with unique ids under `key`. Parsed once per distinct text (orjson; see the module docstring)."""
    return text.map_batches(lambda s: _canonical_arrays(s, key), return_dtype=GROUPS_DTYPE, is_elementwise=True)


def _canonical_arrays(s: pl.Series, key: str) -> pl.Series:
    distinct = s.drop_nulls().unique()
    out = []
    for text in distinct.to_list():
        value = _strip_nulls(_loads(text))
        items = _by_id(value, key)
        out.append((orjson.dumps(value).decode(), None) if items is not None else (None, array_problem(key)))
    answers = pl.DataFrame([pl.Series("json", [o[0] for o in out], dtype=pl.String),
                            pl.Series("error", [o[1] for o in out], dtype=pl.String)]).to_struct(s.name)
    return s.replace_strict(distinct, answers, default=None, return_dtype=GROUPS_DTYPE)


def _strip_nulls(value: Any) -> Any:
    if type(value) is dict:
        return {k: _strip_nulls(v) for k, v in value.items() if v is not None}
    if type(value) is list:
        return [_strip_nulls(v) for v in value if v is not None]
    return value


def _changes(old: pl.Expr, new: pl.Expr, fn) -> pl.Expr:
    pair = pl.struct(old.alias("old"), new.alias("new"))
    return pair.map_batches(lambda s: _map_distinct(s, fn), return_dtype=CHANGE_DTYPE, is_elementwise=True)


def _map_distinct(s: pl.Series, fn) -> pl.Series:
    """Apply `fn(old, new)` once per distinct pair whose texts differ; other rows give null."""
    frame = s.struct.unnest()
    todo = frame.filter(pl.col("new").is_not_null() & pl.col("old").ne_missing(pl.col("new"))).unique()
    if todo.height == 0:  # the common case for a column of plain values: nothing reaches Python
        return pl.Series(s.name, [], dtype=CHANGE_DTYPE).extend_constant(None, len(s))
    rows = [fn(o, n) for o, n in todo.iter_rows()]
    answers = todo.with_columns(
        pl.Series("text", [r[0] for r in rows], dtype=pl.String),
        pl.Series("data_points", [r[1] for r in rows], dtype=pl.Int64),
        pl.Series("mode", [r[2] for r in rows], dtype=pl.String),
        pl.Series("whole_points", [r[3] for r in rows], dtype=pl.Int64),
    )
    joined = frame.with_row_index("_i").join(answers, on=["old", "new"], how="left", nulls_equal=True)
    joined = joined.sort("_i")
    return joined.select(pl.struct("text", "data_points", "mode", "whole_points").alias(s.name)).to_series()


Change = tuple[str | None, int, str | None, int]


def _whole_points(value: Any) -> int:
    """A nested object or array of objects set whole: its values, at least one (writing `{}` or `[]` is a
    write)."""
    return max(1, key_count(value))


def _whole(text: str, value: Any) -> Change:
    points = _whole_points(value)
    return text, points, "set", points


def _object_change(old_text: str | None, new_text: str) -> Change:
    new = orjson.loads(new_text)
    old = _loads(old_text)
    if type(new) is not dict or type(old) is not dict:
        return _whole(new_text, new)
    patch, lost = _patch(old, new)
    if lost:
        return _whole(new_text, new)
    if not patch:
        return _NO_CHANGE  # the same object written with its keys in another order
    return orjson.dumps(patch).decode(), key_count(patch), "merge", _whole_points(new)


def _patch(old: dict, new: dict) -> tuple[dict, bool]:
    """(keys of `new` that differ from `old`, recursing into objects; whether `old` has a key `new` lacks)."""
    out: dict = {}
    lost = any(k not in new for k in old)
    for k, v in new.items():
        before = old.get(k, _MISSING)
        if before is _MISSING:
            out[k] = v
        elif _is_object(v) and _is_object(before):
            sub, sub_lost = _patch(before, v)
            lost = lost or sub_lost
            if sub:
                out[k] = sub
        elif not _same(before, v):
            out[k] = v
    return out, lost


def _array_change(old_text: str | None, new_text: str, key: str) -> Change:
    new = orjson.loads(new_text)
    old = _loads(old_text)
    new_items = _by_id(new, key)
    old_items = _by_id(old, key)
    if new_items is None or old_items is None:
        return _whole(new_text, new)
    adds = [item for i, item in new_items.items() if i not in old_items]
    removes = [{"$identifier_key": key, "$identifier_value": i} for i in old_items if i not in new_items]
    updates, replaced = [], []
    for i, item in new_items.items():
        before = old_items.get(i)
        if before is None or _same(before, item):
            continue
        patch, lost = _patch(before, item)
        if lost:
            replaced.append((before, item))
        else:
            updates.append({"$identifier_key": key, "$identifier_value": i, "$new_object": patch})
    # An item that lost a key: "`$update` can't be used to remove a nested property from an object inside an
    # array. To do this, you'll need to remove the entire item from the array and then add the object without
    # that specific key (using a combination of `$remove` and `$add`)" (Array of objects, "API example" >
    # Update). But "Braze processes them in the following order: 1. Add 2. Remove 3. Update ... you cannot
    # rely on `$remove` followed by `$add` as an upsert" ("Operation processing order"): removed by its id,
    # the re-added item would go too. So the old item is removed by a key and value that only it holds among
    # the items after the Add (a key it loses or whose value changes), and the export's item is added whole;
    # without such a key the whole array is sent (one request, exactly the export's array, billed per value).
    after_add = list(old_items.values()) + adds + [item for _, item in replaced]
    for before, item in replaced:
        criterion = _only_match(before, item, after_add)
        if criterion is None:
            return _whole(new_text, new)
        removes.append({"$identifier_key": criterion[0], "$identifier_value": criterion[1]})
        adds.append(item)
    ops = {name: items for name, items in (("$add", adds), ("$remove", removes), ("$update", updates)) if items}
    if not ops:
        return _NO_CHANGE  # the same items (another order or key order): nothing to change by id
    points = sum(key_count(a) for a in adds) + len(removes) + sum(key_count(u["$new_object"]) for u in updates)
    if points > _whole_points(new):
        # Item operations dearer than the whole array (every id retyped or replaced: a `$remove` per old id
        # and each new item added): the whole array, exactly the export's, for less.
        return _whole(new_text, new)
    # Without `_merge_objects` an `$update` overwrites the item with `$new_object` ("You must set
    # `_merge_objects` to true, or your objects will be overwritten"): item operations with an `$update` are
    # valid only in a merging attributes object (mode `merge`); the caller sends the whole array otherwise.
    return orjson.dumps(ops).decode(), points, "merge" if updates else "ops", _whole_points(new)


def _only_match(before: dict, item: dict, items: list[dict]) -> tuple[str, Any] | None:
    """A (key, value) of `before` that `item` does not have and that no other of `items` matches (a string or
    whole-number value; `1` and `1.0` count as matching, to be safe), or None."""
    for k, v in before.items():
        if type(v) not in (str, int) or (k in item and _same(item[k], v)):
            continue
        if sum(1 for other in items if k in other and _same(other[k], v)) == 1:
            return k, v
    return None


def _groups_change(old_text: str | None, new_text: str) -> Change:
    new = orjson.loads(new_text)
    before = {g["subscription_group_id"]: g["subscription_state"] for g in (_loads(old_text) or [])}
    changed = [g for g in new if before.get(g["subscription_group_id"]) != g["subscription_state"]]
    if not changed:
        return _NO_CHANGE
    return orjson.dumps(changed).decode(), 0, "ops", 0


def _by_id(value: Any, key: str) -> dict | None:
    """Items by id (ids as JSON values), or None when `value` is not a list of objects with unique ids."""
    if type(value) is not list:
        return None
    out: dict = {}
    for item in value:
        if type(item) is not dict or key not in item or type(item[key]) not in (str, int):
            return None
        if item[key] in out:
            return None
        out[item[key]] = item
    return out


_MISSING = object()
_NO_CHANGE: Change = (None, 0, None, 0)


def _loads(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


def _is_object(value: Any) -> bool:
    return type(value) is dict and not _is_time(value)


def _is_time(value: dict) -> bool:
    return len(value) == 1 and "$time" in value


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON values (1 and 1.0 equal, True and 1 not)."""
    if type(a) is bool or type(b) is bool:
        return type(a) is type(b) and a == b
    return a == b
