"""Splitting a rejected request to isolate the objects Braze refuses (a 400 or 413 names none of them).

A `Part` is a request body plus the map from its arrays' *sent* indexes back to the batch *as planned*, so an
error Braze reports against the array as sent lands on the planned object, however often it was split.

Override points: `Part.split` (halves, attributes first: a subclass may split another way) and
`Part.attributes_only` (what is resent alone when events or purchases of an in-doubt batch are held).
The loader (client.py) decides *when* to split: `BrazeLoader._split_or_reject`.
"""

from __future__ import annotations

from typing import Any

import orjson

from connectors.braze.outcomes import ARRAYS, BrazeBodyError

Item = tuple[str, int, Any]  # (array, planned index, object)


class Part:
    """A request body plus the map from its arrays' sent indexes back to the batch as planned.

    A planned body is parsed only when needed (errors, splits, in-doubt handling); until then sent
    indexes are planned indexes.
    """

    __slots__ = ("_arrays", "_extra", "_planned", "batch_no", "body")

    def __init__(
        self, body: bytes, batch_no: int, arrays: dict[str, list] | None = None,
        planned: dict[str, list[int]] | None = None, extra: dict | None = None,
    ) -> None:
        self.body = body
        self.batch_no = batch_no
        self._arrays = arrays
        self._planned = planned
        self._extra = extra

    @classmethod
    def build(cls, items: list[Item], extra: dict, batch_no: int) -> Part:
        """A new body from (array, planned index, object) items, arrays in Braze's processing order."""
        arrays: dict[str, list] = {}
        planned: dict[str, list[int]] = {}
        for array, index, obj in items:
            arrays.setdefault(array, []).append(obj)
            planned.setdefault(array, []).append(index)
        doc = dict(extra)
        doc.update((array, arrays[array]) for array in ARRAYS if array in arrays)
        return cls(orjson.dumps(doc), batch_no, arrays, planned, extra)

    def items(self) -> list[Item]:
        """(array, planned index, object) of every object, attributes first."""
        arrays = self._parsed()
        return [
            (array, self._index(array, sent), obj)
            for array in ARRAYS
            for sent, obj in enumerate(arrays.get(array, ()))
        ]

    def objects(self) -> list[tuple[str, int]]:
        return [(array, index) for array, index, _ in self.items()]

    def __len__(self) -> int:
        return sum(len(objs) for objs in self._parsed().values())

    def planned(self, array: str, sent: int) -> int | None:
        """Planned index of the object at `sent` in `array` as sent; None when Braze named no such object."""
        objs = self._parsed().get(array, ())
        return self._index(array, sent) if 0 <= sent < len(objs) else None

    def has_events(self) -> bool:
        """Events or purchases: Braze never deduplicates them, so a resend may double-count."""
        arrays = self._parsed()
        return bool(arrays.get("events") or arrays.get("purchases"))

    def events_and_purchases(self) -> list[tuple[str, int]]:
        return [(array, index) for array, index in self.objects() if array != "attributes"]

    def attributes_only(self) -> Part | None:
        """The same request without events and purchases (attributes are idempotent); None if empty."""
        items = [item for item in self.items() if item[0] == "attributes"]
        return Part.build(items, self._extra or {}, self.batch_no) if items else None

    def split(self) -> tuple[Part, Part]:
        """Two halves, in order, so one user's attributes still go before their events."""
        items = self.items()
        middle = len(items) // 2
        extra = self._extra or {}
        return Part.build(items[:middle], extra, self.batch_no), Part.build(items[middle:], extra, self.batch_no)

    def _index(self, array: str, sent: int) -> int:
        return sent if self._planned is None else self._planned[array][sent]

    def _parsed(self) -> dict[str, list]:
        if self._arrays is None:
            self._arrays, self._extra = _parse_body(self.body, self.batch_no)
        return self._arrays


def _parse_body(body: bytes, batch_no: int) -> tuple[dict[str, list], dict]:
    """Arrays and other top-level keys of a planned body; anything else is a planner bug."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BrazeBodyError(batch_no) from None
    if not isinstance(doc, dict):
        raise BrazeBodyError(batch_no)
    arrays = {array: doc[array] for array in ARRAYS if doc.get(array) is not None}
    if not all(isinstance(objs, list) for objs in arrays.values()):
        raise BrazeBodyError(batch_no)
    extra = {key: value for key, value in doc.items() if key not in ARRAYS}
    return {array: objs for array, objs in arrays.items() if objs}, extra
