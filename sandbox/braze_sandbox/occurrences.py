"""Event and purchase objects: validate one into the record to store as a new occurrence.

Braze never deduplicates events or purchases (braze-api.md): every accepted object is stored,
even when identical to an earlier one. Rules: events need `name` and `time`; purchases need
`product_id` (at most 255 characters), an ISO 4217 `currency`, a numeric `price` and `time`,
with `quantity` an integer 1..100 (default 1). Properties: at most 256 keys, names non-empty,
at most 255 characters, not starting with `$`, and not one of the reserved keys.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from braze_sandbox import errors
from braze_sandbox.currencies import CURRENCY_CODES
from braze_sandbox.identifiers import identify
from braze_sandbox.rules import Rules
from braze_sandbox.store import Identifier
from braze_sandbox.times import iso_utc, occurrence_time

EVENT_RESERVED = frozenset({"time", "event_name"})
PURCHASE_RESERVED = frozenset({"time", "product_id", "quantity", "event_name", "price", "currency"})
MAX_PROPERTIES = 256
MAX_PROPERTY_NAME = 255
MAX_COMPLEX_PROPERTIES_BYTES = 50 * 1024

Checked = tuple[str | None, Identifier | None, bool, dict | None]


def check_properties(props: Any, reserved: frozenset[str], max_len: int) -> str | None:
    """The error type for a properties object, or None; long strings are truncated in place."""
    if type(props) is not dict:
        return errors.BAD_PROPERTIES
    if len(props) > MAX_PROPERTIES:
        return errors.TOO_MANY_PROPERTIES
    complex_values = False
    for key, value in props.items():
        if not key or key[0] == "$" or len(key) > MAX_PROPERTY_NAME:
            return errors.BAD_PROPERTY_NAME
        if key in reserved:
            return errors.RESERVED_PROPERTY_NAME
        kind = type(value)
        if kind is str:
            if len(value) > max_len:
                props[key] = value[:max_len]
        elif kind is dict or kind is list:
            complex_values = True
    if complex_values and len(orjson.dumps(props)) > MAX_COMPLEX_PROPERTIES_BYTES:
        return errors.PROPERTIES_TOO_LARGE
    return None


def _common(obj: dict, reserved: frozenset[str], rules: Rules, now: datetime) -> tuple:
    """(error, identifier, may_create, stored time, properties) shared by events and purchases.

    This runs for every event and purchase, so `identify`'s common case (one plain external_id)
    and ISO 8601 parsing are inlined; anything unusual takes the full functions.
    """
    external_id = obj.get("external_id")
    if (
        type(external_id) is str
        and 0 < len(external_id) < 200
        and "_update_existing_only" not in obj
        and "user_alias" not in obj
        and "braze_id" not in obj
        and external_id.lower() not in rules.blocked_external_ids
    ):
        ident, create = ("external_id", external_id), True
    else:
        error, ident, create = identify(obj, rules)
        if error:
            return error, None, False, None, None
    sent_time = obj.get("time")
    if sent_time is None:
        return errors.MISSING_TIME, None, False, None, None
    try:
        parsed = (
            datetime.fromisoformat(sent_time) if type(sent_time) is str and len(sent_time) >= 10 else None
        )
    except ValueError:
        parsed = None
    if parsed is not None and parsed.tzinfo is not None:
        stored_time = iso_utc(now) if parsed > now else sent_time
    else:
        stored_time = occurrence_time(sent_time, now)
    if stored_time is None:
        return errors.BAD_TIME, None, False, None, None
    app_id = obj.get("app_id")
    if app_id is not None and type(app_id) is not str:
        return errors.BAD_APP_ID, None, False, None, None
    props = obj.get("properties")
    if props is None:
        props = {}
    else:
        error = check_properties(props, reserved, rules.max_string_length)
        if error:
            return error, None, False, None, None
    return None, ident, create, stored_time, props


def check_event(obj: dict, rules: Rules, now: datetime) -> Checked:
    """(error, identifier, may_create, record) for one event object."""
    name = obj.get("name")
    if type(name) is not str or not (name := name.strip()):
        return errors.MISSING_EVENT_NAME, None, False, None
    error, ident, create, stored_time, props = _common(obj, EVENT_RESERVED, rules, now)
    if error:
        return error, None, False, None
    return (
        None,
        ident,
        create,
        {"name": name[: rules.max_string_length], "time": stored_time, "properties": props},
    )


def check_purchase(obj: dict, rules: Rules, now: datetime) -> Checked:
    """(error, identifier, may_create, record) for one purchase object."""
    product_id = obj.get("product_id")
    if type(product_id) is not str or not (product_id := product_id.strip()):
        return errors.MISSING_PRODUCT_ID, None, False, None
    if len(product_id) > MAX_PROPERTY_NAME:
        return errors.PRODUCT_ID_TOO_LONG, None, False, None
    currency = obj.get("currency")
    if currency is None:
        return errors.MISSING_CURRENCY, None, False, None
    if type(currency) is not str or (currency := currency.upper()) not in CURRENCY_CODES:
        return errors.BAD_CURRENCY, None, False, None
    price = obj.get("price")
    if price is None:
        return errors.MISSING_PRICE, None, False, None
    if type(price) is not int and type(price) is not float:
        return errors.BAD_PRICE, None, False, None
    quantity = obj.get("quantity")
    if quantity is None:
        quantity = 1
    elif type(quantity) is not int or not 1 <= quantity <= 100:
        return errors.BAD_QUANTITY, None, False, None
    error, ident, create, stored_time, props = _common(obj, PURCHASE_RESERVED, rules, now)
    if error:
        return error, None, False, None
    return (
        None,
        ident,
        create,
        {
            "product_id": product_id,
            "currency": currency,
            "price": price,
            "quantity": quantity,
            "time": stored_time,
            "properties": props,
        },
    )
