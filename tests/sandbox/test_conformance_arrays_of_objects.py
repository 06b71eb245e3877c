"""Conformance: arrays of objects changed item by item, as Braze documents them (braze-api.md,
"Attributes object"): `$add`, `$remove`, `$update` applied in the order Add, Remove, Update; items
identified by `$identifier_key`/`$identifier_value`; 100 KB per array; billing per key written."""

from __future__ import annotations

from tests.sandbox.helpers import attrs

PETS = [{"id": 1, "type": "dog", "name": "Gus"}, {"id": 2, "type": "cat", "name": "Gerald"}]


def pets(api, external_id: str = "u1"):
    return api.profile(external_id)["custom_attributes"]["pets"]


def test_rule_whole_array_of_objects_is_set_for_one_data_point(api):
    api.track(attributes=[attrs(pets=PETS)])
    assert pets(api) == PETS
    assert api.stats()["data_points"] == 1


def test_rule_add_appends_items(api):
    api.track(attributes=[attrs(pets=PETS)])
    r = api.track(attributes=[attrs(pets={"$add": [{"id": 3, "type": "fish"}]})])
    assert r.status_code == 201 and "errors" not in r.json()
    assert pets(api) == [*PETS, {"id": 3, "type": "fish"}]


def test_rule_remove_by_identifier(api):
    api.track(attributes=[attrs(pets=PETS)])
    api.track(attributes=[attrs(pets={"$remove": [{"$identifier_key": "id", "$identifier_value": 1}]})])
    assert pets(api) == [PETS[1]]


def test_rule_update_writes_only_the_given_keys_and_bills_them(api):
    api.track(attributes=[attrs(pets=PETS)])
    before = api.stats()["data_points"]
    api.track(attributes=[attrs(pets={"$update": [
        {"$identifier_key": "id", "$identifier_value": 2, "$new_object": {"name": "Gigi"}}]})])
    assert pets(api) == [PETS[0], {"id": 2, "type": "cat", "name": "Gigi"}]
    assert api.stats()["data_points"] - before == 1


def test_rule_operations_apply_in_order_add_remove_update(api):
    """Remove-then-add of one id in one request is not an upsert: the add runs first, then the remove
    deletes both copies."""
    api.track(attributes=[attrs(pets=PETS)])
    api.track(attributes=[attrs(pets={
        "$remove": [{"$identifier_key": "id", "$identifier_value": 1}],
        "$add": [{"id": 1, "type": "dog", "name": "Rex"}],
        "$update": [{"$identifier_key": "id", "$identifier_value": 2, "$new_object": {"age": 3}}],
    })])
    assert pets(api) == [{"id": 2, "type": "cat", "name": "Gerald", "age": 3}]


def test_rule_item_with_null_drops_that_attribute_update_only(api):
    api.track(attributes=[attrs(pets=PETS)])
    r = api.track(attributes=[attrs(pets={"$add": [{"id": 3, "type": None}]}, city="Oslo")])
    assert r.status_code == 201 and "errors" not in r.json()
    custom = api.profile("u1")["custom_attributes"]
    assert custom["pets"] == PETS and custom["city"] == "Oslo"


def test_rule_malformed_operation_rejects_the_object(api):
    r = api.track(attributes=[attrs(pets={"$remove": [{"id": 1}]})])
    assert r.json()["errors"][0]["input_array"] == "attributes"


def test_rule_update_over_100_kb_is_dropped_with_success(api):
    api.track(attributes=[attrs(pets=PETS)])
    big = [{"id": 10 + i, "blob": "x" * 250} for i in range(450)]
    r = api.track(attributes=[attrs(pets={"$add": big})])
    assert r.status_code == 201 and "errors" not in r.json()
    assert pets(api) == PETS


def test_rule_update_with_merge_objects_merges_nested_values_of_the_item(api):
    api.track(attributes=[attrs(pets=[{"id": 1, "vet": {"name": "Ann", "city": "Oslo"}}])])
    api.track(attributes=[attrs(pets={"$update": [
        {"$identifier_key": "id", "$identifier_value": 1, "$new_object": {"vet": {"city": "Bergen"}}}]},
        _merge_objects=True)])
    assert pets(api) == [{"id": 1, "vet": {"name": "Ann", "city": "Bergen"}}]
