"""The naive plan a team writes first: pandas diff per column of yesterday's and tonight's export,
then the changed users' payloads built row by row in Python with `json`.

It follows the product's rules where they decide which pairs change (a value that became empty is sent
as null; an empty list counts as empty; `updated_at` is no attribute; absent users are left alone) so the
set of changed (external_id, attribute) pairs can be checked against the real plan. No validation.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

NOT_ATTRIBUTES = ("external_id", "updated_at")


def read_users(export: Path) -> pd.DataFrame:
    """Every users file of an export folder, in one frame."""
    files = sorted((export / "users").glob("*.parquet")) or [export / "users.parquet"]
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


def naive_plan(yesterday: Path, tonight: Path, *, batch_size: int = 75) -> tuple[list[bytes], set[tuple[str, str]]]:
    """(request bodies, changed (external_id, attribute) pairs) for tonight against yesterday."""
    old, new = read_users(yesterday), read_users(tonight)
    attributes = [c for c in new.columns if c not in NOT_ATTRIBUTES]
    merged = new.merge(old[["external_id", *attributes]], on="external_id", how="left", suffixes=("", "__old"))
    changed = {c: _changed(merged[c], merged[c + "__old"]) for c in attributes}
    any_change = np.logical_or.reduce([mask for mask in changed.values()])
    objects, pairs = [], set()
    rows = merged[any_change]
    masks = {c: mask[any_change] for c, mask in changed.items()}
    for position, external_id in enumerate(rows["external_id"]):
        obj = {"external_id": external_id}
        for c in attributes:
            if masks[c][position]:
                obj[c] = _json_value(rows[c].iat[position])
                pairs.add((external_id, c))
        objects.append(obj)
    bodies = [json.dumps({"attributes": objects[i:i + batch_size]}).encode()
              for i in range(0, len(objects), batch_size)]
    return bodies, pairs


def _changed(now: pd.Series, before: pd.Series) -> np.ndarray:
    """Per row: the value differs from yesterday's (missing on both sides is no change)."""
    if now.dtype == object:
        return np.fromiter((not _same(a, b) for a, b in zip(now, before)), dtype=bool, count=len(now))
    both_missing = now.isna() & before.isna()
    return (~((now == before).fillna(False) | both_missing)).to_numpy()


def _same(a, b) -> bool:
    a, b = _empty_to_none(a), _empty_to_none(b)
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return list(a) == list(b)
    return a == b


def _empty_to_none(v):
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NaT:
        return None
    if isinstance(v, np.ndarray) and v.size == 0:
        return None
    return v


def _json_value(v):
    """A Braze JSON value: times as ISO-8601 UTC text, nested times as {"$time": ...}."""
    v = _empty_to_none(v)
    if v is None:
        return None
    if isinstance(v, (pd.Timestamp, dt.datetime)):
        ts = pd.Timestamp(v)
        ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
        return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, np.ndarray):
        return [_json_value(x) for x in v]
    if isinstance(v, dict):
        return {k: ({"$time": _json_value(x)} if isinstance(x, (pd.Timestamp, dt.datetime)) else _json_value(x))
                for k, x in v.items()}
    if isinstance(v, np.generic):
        return v.item()
    return v
