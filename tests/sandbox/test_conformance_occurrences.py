"""Conformance: events and purchases, their required fields, properties, and no deduplication."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from braze_sandbox.currencies import CURRENCY_CODES

from tests.sandbox.helpers import error_types, event, purchase


def only_errors(response) -> list[tuple[str, int]]:
    return [(a, i) for _, a, i in error_types(response)]


def test_rule_event_needs_name_and_time(api):
    """Rule: an event object requires `name` and `time`."""
    response = api.track(
        events=[
            {"external_id": "u1", "time": "2024-01-01T00:00:00Z"},
            {"external_id": "u1", "name": "x"},
            {"external_id": "u1", "name": "", "time": "2024-01-01T00:00:00Z"},
            event(),
        ]
    )
    assert only_errors(response) == [("events", 0), ("events", 1), ("events", 2)]


def test_rule_time_is_iso_8601(api):
    """Rule: `time` is an ISO 8601 datetime (also Braze's `yyyy-MM-dd'T'HH:mm:ss:SSSZ`); else rejected."""
    response = api.track(
        events=[
            event(time="yesterday"),
            event(time=1714560000),
            event(time="2024-05-01T12:00:00+01:00"),
            event(time="2024-05-01"),
            event(time="2013-07-16T19:20:30:450+0100"),
        ]
    )
    assert only_errors(response) == [("events", 0), ("events", 1)]


def test_rule_future_times_become_now(api):
    """Rule: an event or purchase time in the future is stored as "now"."""
    future = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    api.track(events=[event(time=future)], purchases=[purchase(time=future)])
    profile = api.profile("u1")
    for record in (profile["events"][0], profile["purchases"][0]):
        stored = datetime.fromisoformat(record["time"])
        assert abs((stored - datetime.now(UTC)).total_seconds()) < 60


def test_rule_events_are_never_deduplicated(api):
    """Rule: Braze never deduplicates: every event sent, even identical, is a new occurrence."""
    same = event(properties={"k": 1})
    api.track(events=[same, same])
    api.track(events=[same])
    assert (
        api.profile("u1")["events"]
        == [{"name": "played", "time": "2024-05-01T12:00:00Z", "properties": {"k": 1}}] * 3
    )


def test_rule_purchases_are_never_deduplicated(api):
    """Rule: every purchase object sent is a new occurrence, also across requests (a retry double-counts)."""
    api.track(purchases=[purchase()])
    api.track(purchases=[purchase()])
    assert len(api.profile("u1")["purchases"]) == 2


def test_rule_purchase_required_fields(api):
    """Rule: a purchase requires product_id, currency, price and time."""
    full = purchase()
    missing = [
        {k: v for k, v in full.items() if k != key} for key in ("product_id", "currency", "price", "time")
    ]
    response = api.track(purchases=[*missing, full])
    assert only_errors(response) == [("purchases", i) for i in range(4)]


def test_rule_product_id_at_most_255_characters(api):
    """Rule: product_id is at most 255 characters."""
    response = api.track(purchases=[purchase(product_id="p" * 256), purchase(product_id="p" * 255)])
    assert only_errors(response) == [("purchases", 0)]


def test_rule_currency_is_iso_4217(api):
    """Rule: currency is an ISO 4217 alphabetic code."""
    response = api.track(
        purchases=[
            purchase(currency="XYZ"),
            purchase(currency="EURO"),
            purchase(currency=978),
            purchase(currency="JPY"),
            purchase(currency="CHF"),
        ]
    )
    assert only_errors(response) == [("purchases", 0), ("purchases", 1), ("purchases", 2)]


def test_rule_currency_list_is_complete():
    """Rule: the sandbox ships the complete list of current ISO 4217 alphabetic codes."""
    current = [
        "USD",
        "EUR",
        "GBP",
        "JPY",
        "CNY",
        "INR",
        "BRL",
        "ZAR",
        "SLE",
        "VED",
        "XCG",
        "ZWG",
        "XAD",
        "XAU",
        "XXX",
    ]
    assert set(current) <= CURRENCY_CODES
    assert not {"HRK", "CUC", "ZWL", "SLL", "DEM", "FRF"} & CURRENCY_CODES
    assert len(CURRENCY_CODES) >= 170


def test_rule_price_is_a_number(api):
    """Rule: price is a number (in the currency's base unit)."""
    response = api.track(
        purchases=[purchase(price="9.99"), purchase(price=True), purchase(price=0), purchase(price=12)]
    )
    assert only_errors(response) == [("purchases", 0), ("purchases", 1)]


@pytest.mark.parametrize(
    "quantity, ok", [(0, False), (1, True), (100, True), (101, False), (2.5, False), ("3", False)]
)
def test_rule_quantity_is_an_integer_from_1_to_100(api, quantity, ok):
    """Rule: quantity is optional, an integer 1..100 (default 1)."""
    response = api.track(purchases=[purchase(quantity=quantity), purchase()])
    assert (only_errors(response) == []) is ok
    assert api.profile("u1")["purchases"][-1]["quantity"] == 1


def test_rule_purchase_record_shape(api):
    """Rule (sandbox state model): purchases are stored as {product_id, currency, price, quantity, time,
    properties}, events as {name, time, properties}."""
    api.track(events=[event(properties={"a": 1})], purchases=[purchase(quantity=3, properties={"c": "web"})])
    profile = api.profile("u1")
    assert profile["events"] == [{"name": "played", "time": "2024-05-01T12:00:00Z", "properties": {"a": 1}}]
    assert profile["purchases"] == [
        {
            "product_id": "sku-1",
            "currency": "USD",
            "price": 9.99,
            "quantity": 3,
            "time": "2024-05-01T12:00:00Z",
            "properties": {"c": "web"},
        }
    ]


def test_rule_properties_at_most_256_keys(api):
    """Rule: properties hold at most 256 keys."""
    ok = {f"k{i}": i for i in range(256)}
    too_many = {f"k{i}": i for i in range(257)}
    response = api.track(events=[event(properties=too_many), event(properties=ok)])
    assert only_errors(response) == [("events", 0)]


def test_rule_property_names_at_most_255_chars_and_no_dollar(api):
    """Rule: property names are non-empty, at most 255 characters, and do not start with `$`."""
    response = api.track(
        events=[
            event(properties={"$x": 1}),
            event(properties={"k" * 256: 1}),
            event(properties={"": 1}),
            event(properties={"k" * 255: 1, "a$": 2}),
        ]
    )
    assert only_errors(response) == [("events", 0), ("events", 1), ("events", 2)]


def test_rule_event_reserved_property_keys(api):
    """Rule: event properties may not use the reserved keys `time` and `event_name`."""
    response = api.track(
        events=[
            event(properties={"time": 1}),
            event(properties={"event_name": "x"}),
            event(properties={"price": 1}),
        ]
    )
    assert only_errors(response) == [("events", 0), ("events", 1)]


@pytest.mark.parametrize("key", ["time", "product_id", "quantity", "event_name", "price", "currency"])
def test_rule_purchase_reserved_property_keys(api, key):
    """Rule: purchase properties may not use `time product_id quantity event_name price currency`."""
    response = api.track(purchases=[purchase(properties={key: 1}), purchase(properties={"name": 1})])
    assert only_errors(response) == [("purchases", 0)]


def test_rule_properties_must_be_an_object(api):
    """Rule: `properties` is an object."""
    response = api.track(events=[event(properties=["a"]), event(properties={})])
    assert only_errors(response) == [("events", 0)]


def test_rule_event_property_strings_truncated_at_255(api):
    """Rule: string property values are at most 255 characters; longer ones are truncated."""
    api.track(events=[event(properties={"note": "z" * 300})])
    assert api.profile("u1")["events"][0]["properties"]["note"] == "z" * 255


def test_rule_properties_with_objects_at_most_50kb(api):
    """Rule: properties holding arrays or objects are at most 50 KB."""
    response = api.track(
        events=[event(properties={"items": ["x" * 200] * 300}), event(properties={"items": ["x"]})]
    )
    assert only_errors(response) == [("events", 0)]
