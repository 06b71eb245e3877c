"""What one accepted object costs in Braze data points, as Braze's pages count them.

- Every attribute written costs one, even unchanged and even `null` (Data points, "Definition"; Nested custom
  attributes, "Data points": "Updating a custom attribute object to `null` also consumes a data point").
- A simple array set whole costs one; each value added or removed incrementally costs one (Data points,
  "Arrays").
- A nested object costs one per key that holds a value: the example object with five top-level values and
  `play_analytics: {count, top_10_listeners}` "counts as seven (7) data points" (Nested custom attributes,
  "Data points"), so a key holding an object is not counted itself, its keys are.
- An array of objects: creating it costs one per attribute of each object ("each pet object has four
  attributes and there are two objects": 8), `$update` one per property sent in `$new_object` (2 in the
  example), `$remove` one per removal criterion (3 in the example) (Array of objects, "Data points"). The page
  gives no figure for `$add`; it is counted like creating the items it adds.
- Every event and purchase costs one plus one per property key (Data points, "Billable data points").
- Not billable: email_subscribe, push_subscribe, subscription groups, push tokens and identifiers
  (Data points, "Non-billable data points").
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
    """An array-of-objects change: the values of each added item, one per removal criterion, the values
    of each `$new_object`."""
    return sum(values(item) for item in add) + len(removals) + sum(values(u[2]) for u in updates)


def whole_value(value: Any) -> int:
    """A nested object or an array of objects set whole: one per value it holds, at least one (writing the
    attribute, even as `{}`, is a write)."""
    return max(1, values(value))


def values(value: Any) -> int:
    """The keys holding a value in a nested value, at any depth: a key whose value is an object (not a
    `{"$time": ...}` date) counts its own keys instead; objects inside a list count their keys."""
    if type(value) is dict:
        if len(value) == 1 and "$time" in value:
            return 1
        return sum(values(v) if _container(v) else 1 for v in value.values())
    if type(value) is list:
        return sum(values(v) for v in value if type(v) is dict)
    return 0


def _container(value: Any) -> bool:
    if type(value) is dict:
        return bool(value) and not (len(value) == 1 and "$time" in value)
    return type(value) is list and any(type(v) is dict for v in value)


def occurrence(properties: dict) -> int:
    """An event or purchase object: itself plus its property keys."""
    return 1 + len(properties)
