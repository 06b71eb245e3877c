"""What a plan sends of Braze's richer user model, for `braze-migrate plan`: nested objects (merged or
whole), arrays of objects (item operations or whole), subscription groups, and the run's user deletes.

Data points follow Braze's billing (docs/braze-fidelity.md): one per nested key holding a value, for an array
of objects set whole one per value of its items, the values of each added item and of each `$new_object`, one
per removal criterion; subscription groups and deletes are free. Read from the planned request bodies, which
`plan` walks anyway to write them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from transforms.nested import key_count

ITEM_OPS = ("$add", "$remove", "$update")


def empty_breakdown() -> dict[str, dict[str, int]]:
    return {
        "nested_objects": {"objects": 0, "merged": 0, "whole": 0, "data_points": 0},
        "arrays_of_objects": {"objects": 0, "whole": 0, "$add": 0, "$remove": 0, "$update": 0, "data_points": 0},
        "subscription_groups": {"objects": 0, "groups": 0, "data_points": 0},
    }


def add_body(breakdown: dict, body: dict) -> None:
    """Count one planned `/users/track` body into `breakdown` (from `empty_breakdown`)."""
    for obj in body.get("attributes") or ():
        merged = obj.get("_merge_objects") is True
        for name, value in obj.items():
            if name == "subscription_groups" and isinstance(value, list):
                b = breakdown["subscription_groups"]
                b["objects"] += 1
                b["groups"] += len(value)
            elif isinstance(value, dict) and value and set(value) <= set(ITEM_OPS):
                b = breakdown["arrays_of_objects"]
                b["objects"] += 1
                for op in ITEM_OPS:
                    b[op] += len(value.get(op, ()))
                b["data_points"] += (sum(key_count(i) for i in value.get("$add", ())) + len(value.get("$remove", ()))
                                     + sum(key_count(u.get("$new_object")) for u in value.get("$update", ())))
            elif isinstance(value, list) and value and all(isinstance(i, dict) for i in value):
                b = breakdown["arrays_of_objects"]
                b["objects"] += 1
                b["whole"] += 1
                b["data_points"] += max(1, key_count(value))
            elif isinstance(value, dict) and not _is_time(value) and name not in ("push_tokens", "user_alias"):
                b = breakdown["nested_objects"]
                b["objects"] += 1
                b["merged" if merged else "whole"] += 1
                b["data_points"] += max(1, key_count(value))


def deletes_preview(source: str, mapping: str | None, state: Path, work_dir: Path, settings: Any) -> dict | None:
    """How many users a run's deletes would name, in how many requests, and whether the guard would hold
    them (nothing is recorded or sent); None when the source has no user_deletes."""
    from braze_migrate.ops.deletes import DeleteSettings, read_deletes
    from connectors.state.snapshot import Snapshot

    found = read_deletes(source, mapping, work_dir)
    if found is None:
        return None
    ids, rejected = found
    s = DeleteSettings.of(settings)
    acked = Snapshot(state).scan("users").select("external_id").collect().height
    held = not s.allow_mass and (ids.height > s.max_count
                                 or (acked >= max(1, s.min_users) and ids.height > s.max_share * acked))
    return {"users": ids.height, "requests": math.ceil(ids.height / 50), "rejected_rows": len(rejected),
            "data_points": 0, "held_by_guard": held}


def _is_time(value: dict) -> bool:
    return len(value) == 1 and "$time" in value
