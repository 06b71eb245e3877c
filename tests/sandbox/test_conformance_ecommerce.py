"""Conformance: eCommerce recommended events are validated against their schemas on ingestion.

Page: https://www.braze.com/docs/user_guide/data/activation/events/recommended_events/ — "Event schemas" (the
property tables of order_placed, order_cancelled, order_refunded and `products[]`) and "Event validation and
troubleshooting" ("What we validate", "When validation fails": the event is dropped and reported in `errors[]`
by index while the message stays "success"; a name that is not exact skips validation).
"""

from __future__ import annotations

import copy

import pytest

from tests.sandbox.helpers import error_types, event

PRODUCT = {"product_id": "SKU-RUN-4821", "product_name": "Ultraboost Running Shoe", "variant_id": "UB-BLK-11",
           "quantity": 1, "price": 189.99}
# The page's REST API example of ecommerce.order_placed, trimmed to one product.
PLACED = {"order_id": "ord_77821", "cart_id": "cart_abc123", "total_value": 224.96, "subtotal_value": 209.97,
          "tax": 9.0, "shipping": 5.99, "currency": "USD", "total_discounts": 10.0,
          "discounts": [{"code": "SPRING10", "amount": 10.0, "type": "percentage"}],
          "products": [{**PRODUCT, "image_url": "https://cdn.example.com/a.jpg", "metadata": {"size": "11"}}],
          "source": "web", "metadata": {"order_status_url": "https://www.example.com/orders/ord_77821/status"}}


def order(name: str = "ecommerce.order_placed", **changes) -> dict:
    props = copy.deepcopy(PLACED)
    for key, value in changes.items():
        if value is None:
            props.pop(key, None)
        else:
            props[key] = value
    return event("u1", name=name, properties=props)


def test_rule_a_valid_order_placed_is_stored_with_its_products(api):
    r = api.track(events=[order()])
    assert r.status_code == 201 and r.json() == {"message": "success", "attributes_processed": 0,
                                                 "events_processed": 1, "purchases_processed": 0}
    (stored,) = api.profile("u1")["events"]
    assert stored["name"] == "ecommerce.order_placed" and stored["properties"]["products"][0]["price"] == 189.99


@pytest.mark.parametrize(("change", "reason"), [
    ({"order_id": None}, "'order_id' is required"),
    ({"source": None}, "'source' is required"),  # required by the schema tables
    ({"products": None}, "'products' is required"),
    ({"total_value": "29.99"}, "'total_value' must be a number"),  # the page's unexpected_data_type example
    ({"gift_wrapped": True}, "'gift_wrapped' is not a property of this event: put custom data in 'metadata'"),
    ({"total_value": -1}, "'total_value' must be >= 0"),
    ({"currency": "XYZ"}, "'currency' must be an ISO 4217 currency"),  # the page's example error type
    ({"products": []}, "'products' must hold at least one product"),
    ({"products": [{**PRODUCT, "quantity": 1.5}]}, "'products[0].quantity' must be an integer"),
    ({"products": [{k: v for k, v in PRODUCT.items() if k != "variant_id"}]}, "'products[0].variant_id' is required"),
    ({"products": [{**PRODUCT, "color": "red"}]},
     "'products[0].color' is not a property of this event: put custom data in 'metadata'"),
])
def test_rule_an_invalid_order_is_dropped_and_reported_by_index(api, change, reason):
    r = api.track(events=[event("u1"), order(**change)])
    assert r.status_code == 201 and r.json()["message"] == "success"
    assert error_types(r) == [(reason, "events", 1)]
    assert [e["name"] for e in api.profile("u1")["events"]] == ["played"]


def test_rule_cancel_needs_a_reason_and_refund_takes_no_cart(api):
    r = api.track(events=[order("ecommerce.order_cancelled", cart_id=None),
                          order("ecommerce.order_cancelled", cart_id=None, cancel_reason="customer_request"),
                          order("ecommerce.order_refunded", cart_id=None, subtotal_value=None, tax=None, shipping=None),
                          order("ecommerce.order_refunded")])
    assert error_types(r) == [("'cancel_reason' is required", "events", 0),
                              ("'cart_id' is not a property of this event: put custom data in 'metadata'", "events", 3)]
    assert r.json()["events_processed"] == 2


def test_rule_a_name_that_is_not_exact_is_a_plain_custom_event(api):
    r = api.track(events=[order("ecommerce.OrderPlaced", total_value="not checked")])
    assert r.status_code == 201 and "errors" not in r.json()


def test_rule_a_request_of_only_invalid_orders_is_a_400(api):
    r = api.track(events=[order(order_id=None)])
    assert r.status_code == 400 and error_types(r) == [("'order_id' is required", "events", 0)]
