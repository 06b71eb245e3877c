"""Conformance: the data-point counter (braze-api.md "Data points")."""

from __future__ import annotations

from tests.sandbox.helpers import attrs, event, purchase


def points(api, **arrays) -> int:
    before = api.stats()["data_points"]
    assert api.track(**arrays).status_code == 201
    return api.stats()["data_points"] - before


def test_rule_every_attribute_written_costs_one_even_unchanged(api):
    """Rule: every attribute written is a data point, even when the value did not change."""
    assert points(api, attributes=[attrs(plan="gold", first_name="Ada")]) == 2
    assert points(api, attributes=[attrs(plan="gold", first_name="Ada")]) == 2


def test_rule_writing_null_costs_one(api):
    """Rule: writing `null` (removing an attribute) costs a data point."""
    assert points(api, attributes=[attrs(plan=None)]) == 1


def test_rule_identifiers_and_subscriptions_and_tokens_are_free(api):
    """Rule: identifiers, email_subscribe, push_subscribe, subscription groups and push tokens
    are not billable."""
    free = attrs(
        email_subscribe="opted_in",
        push_subscribe="subscribed",
        subscription_groups=[{"subscription_group_id": "g", "subscription_state": "subscribed"}],
        push_tokens=[{"app_id": "a", "token": "t" * 64}],
        _update_existing_only=False,
    )
    assert points(api, attributes=[free]) == 0
    assert points(api, attributes=[{"email": "x@example.com"}]) == 0


def test_rule_whole_array_costs_one_incremental_values_one_each(api):
    """Rule: setting a whole array costs one; each value added or removed incrementally costs one."""
    assert points(api, attributes=[attrs(tags=["a", "b", "c"])]) == 1
    assert points(api, attributes=[attrs(tags={"add": ["d", "e"], "remove": ["a"]})]) == 3


def test_rule_each_nested_key_holding_a_value_costs_one(api):
    """Rule: each key of a nested object holding a value costs one data point; a key holding an object is
    counted through its own keys ("counts as seven (7) data points",
    https://www.braze.com/docs/user_guide/data/custom_data/custom_attributes/nested_custom_attribute_support/,
    "Data points")."""
    assert points(api, attributes=[attrs(book={"title": "Dune", "meta": {"year": 1965, "pages": 1}})]) == 3


def test_rule_event_and_purchase_cost_one_plus_property_keys(api):
    """Rule: each event and purchase costs one, plus one per property key."""
    assert (
        points(api, events=[event(properties={"a": 1, "b": 2})], purchases=[purchase(properties={"c": 3})])
        == 5
    )
    assert points(api, events=[event()]) == 1


def test_rule_standard_fields_cost_one_each(api):
    """Rule: standard profile fields (names, email, country, language, ...) are billable like attributes."""
    assert (
        points(api, attributes=[attrs(first_name="A", email="a@example.com", country="FR", language="fr")])
        == 4
    )


def test_rule_rejected_and_dropped_objects_cost_nothing(api):
    """Rule: only written data costs: rejected objects and update-only objects without a user cost nothing."""
    api.track(attributes=[attrs("x", email="bad", plan="gold"), attrs("y")])
    assert api.stats()["data_points"] == 0
    assert points(api, attributes=[attrs("ghost", plan="gold", _update_existing_only=True)]) == 0
