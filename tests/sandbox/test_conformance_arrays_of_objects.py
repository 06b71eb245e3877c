"""Conformance: arrays of objects beyond the page's own examples (those are in test_documented_examples.py):
https://www.braze.com/docs/user_guide/data/custom_data/custom_attributes/array_of_objects/."""

from __future__ import annotations

from tests.sandbox.helpers import attrs

PETS = [{"id": 1, "type": "dog", "name": "Gus"}, {"id": 2, "type": "cat", "name": "Gerald"}]


def pets(api, external_id: str = "u1"):
    return api.profile(external_id)["custom_attributes"]["pets"]


def test_rule_item_with_null_drops_that_attribute_update_only(api):
    """Rule ("Invalid nested custom attributes"): a null inside an item drops that attribute's update; the
    request succeeds and the object's other attributes are written."""
    api.track(attributes=[attrs(pets=PETS)])
    r = api.track(attributes=[attrs(pets={"$add": [{"id": 3, "type": None}]}, city="Oslo")])
    assert r.status_code == 201 and "errors" not in r.json()
    custom = api.profile("u1")["custom_attributes"]
    assert custom["pets"] == PETS and custom["city"] == "Oslo"


def test_rule_malformed_operation_rejects_the_object(api):
    """The page is silent on a `$remove` without `$identifier_key`: the sandbox rejects the object (named in
    `errors[]`) rather than guess."""
    r = api.track(attributes=[attrs(pets={"$remove": [{"id": 1}]})])
    assert r.json()["errors"][0]["input_array"] == "attributes"


def test_rule_update_with_merge_objects_merges_nested_values_of_the_item(api):
    """Rule ("API example" > Update): with `_merge_objects` the update "performs a deep merge", inside the item
    too; one data point for the one key sent."""
    api.track(attributes=[attrs(pets=[{"id": 1, "vet": {"name": "Ann", "city": "Oslo"}}])])
    before = api.stats()["data_points"]
    api.track(attributes=[attrs(pets={"$update": [
        {"$identifier_key": "id", "$identifier_value": 1, "$new_object": {"vet": {"city": "Bergen"}}}]},
        _merge_objects=True)])
    assert pets(api) == [{"id": 1, "vet": {"name": "Ann", "city": "Bergen"}}]
    assert api.stats()["data_points"] - before == 1


def test_rule_update_cannot_remove_a_key_under_merge(api):
    """Rule ("API example" > Update): "`$update` can't be used to remove a nested property from an object inside
    an array": a null in `$new_object` is an invalid nested value, so the update is dropped."""
    api.track(attributes=[attrs(pets=PETS)])
    r = api.track(attributes=[attrs(pets={"$update": [
        {"$identifier_key": "id", "$identifier_value": 1, "$new_object": {"name": None}}]}, _merge_objects=True)])
    assert r.status_code == 201 and pets(api) == PETS


def test_rule_items_are_not_made_unique(api):
    """Rule ("Limitations"): uniqueness of items "is not enforced by Braze": equal items are both kept."""
    api.track(attributes=[attrs(pets=[PETS[0], PETS[0]])])
    assert pets(api) == [PETS[0], PETS[0]]
