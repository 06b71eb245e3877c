"""What one accepted object costs in Braze data points (braze-api.md "Data points").

Every attribute written costs one, even unchanged and even `null`; setting a whole array costs one,
each value added or removed incrementally costs one; each key of a nested object costs one.
Every event and purchase costs one plus one per property key. Not billable: email_subscribe,
push_subscribe, subscription groups, push tokens and identifiers.
"""

from __future__ import annotations

from typing import Any

from braze_sandbox.standard_fields import NOT_BILLABLE


def standard_field(name: str) -> int:
    """One for a standard profile field, none for the subscription fields."""
    return 0 if name in NOT_BILLABLE else 1


def array_change(add: list, remove: list) -> int:
    """One per value added or removed by `{"add": ...}` / `{"remove": ...}`."""
    return len(add) + len(remove)


def item_operations(add: list, removals: list, updates: list) -> int:
    """An array-of-objects change: the keys of each added item, one per removed item, the keys of each
    `$new_object` (only what changes is billed)."""
    return sum(nested_object(item) for item in add) + len(removals) + sum(nested_object(u[2]) for u in updates)


def nested_object(value: Any) -> int:
    """One per key of a nested object, at every depth (an object inside an array included)."""
    if type(value) is dict:
        if len(value) == 1 and "$time" in value:
            return 0
        return sum(1 + nested_object(v) for v in value.values())
    if type(value) is list:
        return sum(nested_object(v) for v in value)
    return 0


def occurrence(properties: dict) -> int:
    """An event or purchase object: itself plus its property keys."""
    return 1 + len(properties)
