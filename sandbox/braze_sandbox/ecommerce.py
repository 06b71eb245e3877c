"""eCommerce recommended events: an event whose name is exactly one of Braze's recommended eCommerce events is
validated against that event's schema; an invalid one is dropped and reported in `errors[]`.

Source: https://www.braze.com/docs/user_guide/data/activation/events/recommended_events/ ("Event schemas",
"Event validation and troubleshooting"). What is checked, as documented:
- required properties present (`order_placed`: order_id, total_value, currency, products, source; ...);
- data types (strings, numbers, integers, arrays, objects);
- no extra top-level property (custom data goes in `metadata`), nor in a product (in `products[].metadata`);
- value constraints: monetary fields >= 0, `currency` an ISO 4217 code;
- each item of `products[]` has product_id, product_name, variant_id, quantity and price.
An invalid event "is dropped entirely" and each one is reported in the response's `errors` array by its index
(the top-level message stays "success"). The page's example names `input_array: "purchases"` for an event;
the sandbox names the array the event was sent in (`events`), as every other `/users/track` error does.
A name that is not exactly a recommended one (`ecommerce.OrderPlaced`) skips validation: a plain custom event.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from braze_sandbox.currencies import CURRENCY_CODES
from braze_sandbox.occurrences import Checked, check_event
from braze_sandbox.rules import Rules

_MONEY = ("total_value", "subtotal_value", "tax", "shipping", "total_discounts")
_STRING, _NUMBER, _INTEGER, _ARRAY, _OBJECT = "a string", "a number", "an integer", "an array", "an object"
PRODUCT = {
    "product_id": (_STRING, True), "product_name": (_STRING, True), "variant_id": (_STRING, True),
    "image_url": (_STRING, False), "product_url": (_STRING, False), "quantity": (_INTEGER, True),
    "price": (_NUMBER, True), "metadata": (_OBJECT, False),
}
_ORDER = {
    "order_id": (_STRING, True), "total_value": (_NUMBER, True), "currency": (_STRING, True),
    "total_discounts": (_NUMBER, False), "discounts": (_ARRAY, False), "products": (_ARRAY, True),
    "source": (_STRING, True), "metadata": (_OBJECT, False),
}
_TOTALS = {"subtotal_value": (_NUMBER, False), "tax": (_NUMBER, False), "shipping": (_NUMBER, False)}
SCHEMAS: dict[str, dict[str, tuple[str, bool]]] = {
    "ecommerce.order_placed": {**_ORDER, **_TOTALS, "cart_id": (_STRING, False)},
    "ecommerce.order_cancelled": {**_ORDER, **_TOTALS, "cancel_reason": (_STRING, True)},
    "ecommerce.order_refunded": dict(_ORDER),
}


def check_recommended_event(obj: dict, rules: Rules, now: datetime) -> Checked:
    """`check_event`, then the recommended event's schema when the name is exactly one of them."""
    checked = check_event(obj, rules, now)
    schema = SCHEMAS.get(obj.get("name"))  # exact, case-sensitive: anything else is a plain custom event
    if checked[0] is None and schema is not None:
        problem = schema_problem(obj.get("properties"), schema)
        if problem is not None:
            return problem, None, False, None
    return checked


def schema_problem(props: Any, schema: dict[str, tuple[str, bool]]) -> str | None:
    """The first way `props` breaks `schema` as a sentence naming the property, or None."""
    if type(props) is not dict:
        return "'properties' must be an object"
    problem = _fields(props, schema, "")
    if problem is not None:
        return problem
    if props["currency"] not in CURRENCY_CODES:
        return "'currency' must be an ISO 4217 currency"
    if not props["products"]:
        return "'products' must hold at least one product"
    for i, product in enumerate(props["products"]):
        if type(product) is not dict:
            return f"'products[{i}]' must be an object"
        problem = _fields(product, PRODUCT, f"products[{i}].")
        if problem is not None:
            return problem
    return None


def _fields(obj: dict, schema: dict[str, tuple[str, bool]], prefix: str) -> str | None:
    for name, (kind, required) in schema.items():
        if required and name not in obj:
            return f"'{prefix}{name}' is required"
    for name, value in obj.items():
        if name not in schema:
            return f"'{prefix}{name}' is not a property of this event: put custom data in 'metadata'"
        kind = schema[name][0]
        if not _is(value, kind):
            return f"'{prefix}{name}' must be {kind}"
        if (name in _MONEY or name == "price") and value < 0:
            return f"'{prefix}{name}' must be >= 0"
    return None


def _is(value: Any, kind: str) -> bool:
    t = type(value)
    if kind == _STRING:
        return t is str
    if kind == _NUMBER:
        return t is int or t is float
    if kind == _INTEGER:
        return t is int
    if kind == _ARRAY:
        return t is list
    return t is dict
