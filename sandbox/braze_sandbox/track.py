"""`POST /users/track`: object-count limits, then attributes, events and purchases in that order.

Answers (braze-api.md "Responses"): 201 with the processed counts, plus `errors[]` naming each
rejected object by its index in the array as sent; 400 when the request is malformed, holds too
many objects, or no object at all could be processed.
"""

from __future__ import annotations

from datetime import UTC, datetime

from braze_sandbox import datapoints, errors
from braze_sandbox.attributes import apply_attributes, check_attributes
from braze_sandbox.ecommerce import check_recommended_event
from braze_sandbox.occurrences import check_purchase
from braze_sandbox.rules import Rules
from braze_sandbox.stats import Stats
from braze_sandbox.store import Store

ARRAYS = ("attributes", "events", "purchases")
NO_VALID_DATA = "Valid data must be provided in the 'attributes', 'events', or 'purchases' fields."
TOO_MANY = "Max Input Length Exceeded"


def _error(kind: str, array: str, index: int) -> dict:
    return {"type": kind, "input_array": array, "index": index}


def _too_many(arrays: dict[str, list], mode: str) -> str | None:
    """The reason a request holds too many objects for the contract's mode, or None."""
    sizes = [len(arrays[name]) for name in ARRAYS]
    if mode == "per_array75":
        return "at most 75 objects per array" if max(sizes) > 75 else None
    limit = 50 if mode == "combined50" else 75
    return (
        f"at most {limit} objects combined across attributes, events and purchases"
        if sum(sizes) > limit
        else None
    )


def process_track(body: object, store: Store, rules: Rules, mode: str, stats: Stats) -> tuple[int, dict]:
    """Validate and apply one request body; return (status, JSON body)."""
    if type(body) is not dict:
        return 400, {"message": "Bad Request", "errors": [{"type": "The request body must be a JSON object"}]}
    arrays = {}
    for name in ARRAYS:
        value = body.get(name)
        if value is None:
            value = []
        if type(value) is not list:
            return 400, {"message": "Bad Request", "errors": [{"type": f"'{name}' must be an array"}]}
        arrays[name] = value
    reason = _too_many(arrays, mode)
    if reason:
        return 400, {"message": TOO_MANY, "errors": [{"type": TOO_MANY, "detail": reason}]}
    found: list[dict] = []
    done = {name: 0 for name in ARRAYS}
    points = dropped = nested_dropped = 0
    max_array = rules.max_array_length
    now = datetime.now(UTC)
    for index, obj in enumerate(arrays["attributes"]):
        error, update = check_attributes(obj, rules) if type(obj) is dict else (errors.NOT_AN_OBJECT, None)
        if error:
            found.append(_error(error, "attributes", index))
            continue
        written, billed = apply_attributes(store, update, max_array)
        points += billed
        nested_dropped += update.nested_dropped
        dropped += not written
        done["attributes"] += 1
    resolve, cost = store.resolve, datapoints.occurrence
    for array, check, add in (
        ("events", check_recommended_event, store.add_event),  # eCommerce schemas: ecommerce.py
        ("purchases", check_purchase, store.add_purchase),
    ):
        for index, obj in enumerate(arrays[array]):
            if type(obj) is not dict:
                found.append(_error(errors.NOT_AN_OBJECT, array, index))
                continue
            error, ident, create, record = check(obj, rules, now)
            if error:
                found.append(_error(error, array, index))
                continue
            done[array] += 1
            profile = resolve(ident, create)
            if profile is None:
                dropped += 1
                continue
            add(profile, record)
            points += cost(record["properties"])
    _count(stats, done, len(found), dropped, nested_dropped, points)
    if not any(done.values()):
        return 400, {"message": NO_VALID_DATA, "errors": found}
    answer = {"message": "success", **{f"{name}_processed": done[name] for name in ARRAYS}}
    if found:
        answer["errors"] = found
    return 201, answer


def _count(stats: Stats, done: dict, rejected: int, dropped: int, nested_dropped: int, points: int) -> None:
    objects = stats.objects
    for name, count in done.items():
        objects[f"{name}_processed"] += count
    objects["rejected"] += rejected
    objects["dropped_no_profile"] += dropped
    objects["nested_attributes_dropped"] += nested_dropped
    stats.data_points += points
