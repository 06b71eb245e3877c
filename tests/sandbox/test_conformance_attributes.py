"""Conformance: attribute operations and the standard profile fields."""

from __future__ import annotations

import pytest

from tests.sandbox.helpers import attrs, error_types


def custom(api, external_id: str = "u1") -> dict:
    return api.profile(external_id)["custom_attributes"]


def test_rule_null_removes_an_attribute(api):
    """Rule: setting an attribute to `null` removes it."""
    api.track(attributes=[attrs(plan="gold", first_name="Ada")])
    api.track(attributes=[attrs(plan=None, first_name=None)])
    profile = api.profile("u1")
    assert "plan" not in profile["custom_attributes"] and "first_name" not in profile


def test_rule_inc_increments_integers(api):
    """Rule: `{"inc": n}` adds n (positive or negative) to an integer attribute, starting from 0."""
    api.track(attributes=[attrs(visits={"inc": 2})])
    api.track(attributes=[attrs(visits={"inc": 5})])
    api.track(attributes=[attrs(visits={"inc": -1})])
    assert custom(api)["visits"] == 6


def test_rule_inc_needs_an_integer(api):
    """Rule: `{"inc": n}` takes an integer n; anything else rejects the object."""
    response = api.track(attributes=[attrs(visits={"inc": "1"}), attrs("u2")])
    assert [(a, i) for _, a, i in error_types(response)] == [("attributes", 0)]


def test_rule_array_set_replaces_and_keeps_values_unique(api):
    """Rule: an array value sets the whole array; values stay unique (first occurrence kept)."""
    api.track(attributes=[attrs(tags=["x"])])
    api.track(attributes=[attrs(tags=["hotdog", "hotdog", "hotdog", "pizza"])])
    assert custom(api)["tags"] == ["hotdog", "pizza"]


def test_rule_array_add_and_remove(api):
    """Rule: `{"add": [...]}` appends (an existing value moves to the end) and `{"remove": [...]}` removes."""
    api.track(attributes=[attrs(tags=["a", "b", "c"])])
    api.track(attributes=[attrs(tags={"add": ["a", "d"]})])
    assert custom(api)["tags"] == ["b", "c", "a", "d"]
    api.track(attributes=[attrs(tags={"remove": ["b", "zzz"]})])
    assert custom(api)["tags"] == ["c", "a", "d"]
    api.track(attributes=[attrs(fresh={"add": ["x", "x"]})])
    assert custom(api)["fresh"] == ["x"]


def test_rule_array_over_max_length_drops_the_oldest(make_api):
    """Rule: an array over its maximum length (a setting, 500 by default) drops the oldest values."""
    api = make_api(max_array_length=3)
    api.track(attributes=[attrs(tags=["a", "b", "c", "d"])])
    assert custom(api)["tags"] == ["b", "c", "d"]
    api.track(attributes=[attrs(tags={"add": ["e"]})])
    assert custom(api)["tags"] == ["c", "d", "e"]


def test_rule_default_array_maximum_is_500(api):
    """Rule: the default array maximum is 500 elements."""
    api.track(attributes=[attrs(tags=[f"v{i}" for i in range(501)])])
    tags = custom(api)["tags"]
    assert len(tags) == 500 and tags[0] == "v1" and tags[-1] == "v500"


def test_rule_arrays_are_one_dimensional(api):
    """Rule: custom attribute arrays are one-dimensional sets; nested arrays or nulls are refused."""
    response = api.track(attributes=[attrs(tags=[["a"]]), attrs("u2", tags=["a", None]), attrs("u3")])
    assert [(a, i) for _, a, i in error_types(response)] == [("attributes", 0), ("attributes", 1)]


def test_rule_nested_object_is_overwritten_without_merge(api):
    """Rule: a nested object replaces the stored one unless `_merge_objects` is true."""
    api.track(attributes=[attrs(book={"title": "Dune", "author": "Herbert"})])
    api.track(attributes=[attrs(book={"title": "Emma"})])
    assert custom(api)["book"] == {"title": "Emma"}


def test_rule_merge_objects_merges_nested_objects(api):
    """Rule: with `"_merge_objects": true` a nested object is merged into the stored one (deeply)."""
    api.track(attributes=[attrs(book={"title": "Dune", "meta": {"year": 1965, "pages": 412}})])
    api.track(attributes=[attrs(book={"meta": {"year": 1966}, "isbn": "x"}, _merge_objects=True)])
    assert custom(api)["book"] == {"title": "Dune", "meta": {"year": 1966, "pages": 412}, "isbn": "x"}


def test_rule_nested_dates_use_time_objects(api):
    """Rule: dates inside nested objects are written `{"$time": "..."}` and stored as such."""
    api.track(attributes=[attrs(book={"published": {"$time": "1965-08-01T00:00:00Z"}})])
    assert custom(api)["book"] == {"published": {"$time": "1965-08-01T00:00:00Z"}}


def test_rule_invalid_nested_value_drops_that_attribute_update(api):
    """Rule: one invalid nested value (null, bad `$time`, key with space/dot/$) drops that
    attribute's whole update; the rest of the object is processed."""
    api.track(attributes=[attrs(book={"title": "Dune"})])
    response = api.track(
        attributes=[
            attrs(
                book={"title": "Emma", "year": None},
                other={"a.b": 1},
                when={"at": {"$time": "never"}},
                plan="gold",
            )
        ]
    )
    assert response.status_code == 201 and "errors" not in response.json()
    stored = custom(api)
    assert stored["book"] == {"title": "Dune"} and "other" not in stored and "when" not in stored
    assert stored["plan"] == "gold"
    assert api.stats()["objects"]["nested_attributes_dropped"] == 3


def test_rule_nested_object_limited_to_100kb(api):
    """Rule: a nested object is at most 100 KB; a bigger one is dropped."""
    api.track(attributes=[attrs(blob={"text": "x" * (101 * 1024)}, plan="gold")])
    assert "blob" not in custom(api) and custom(api)["plan"] == "gold"


def test_rule_strings_truncated_silently_at_255(api):
    """Rule: string values and attribute names longer than 255 characters are truncated silently."""
    response = api.track(attributes=[attrs(note="y" * 300, **{"n" * 300: "v"}, first_name="F" * 300)])
    assert response.status_code == 201 and "errors" not in response.json()
    profile = api.profile("u1")
    assert profile["custom_attributes"]["note"] == "y" * 255
    assert profile["custom_attributes"]["n" * 255] == "v"
    assert profile["first_name"] == "F" * 255


def test_rule_whitespace_is_trimmed(api):
    """Rule: leading and trailing whitespace of names and string values is trimmed."""
    api.track(attributes=[attrs(**{"  plan ": "  gold  "}, first_name=" Ada ")])
    profile = api.profile("u1")
    assert profile["custom_attributes"] == {"plan": "gold"} and profile["first_name"] == "Ada"


def test_rule_names_starting_with_dollar_are_rejected(api):
    """Rule: attribute names must not start with `$`."""
    response = api.track(attributes=[attrs(**{"$plan": "gold"}), attrs("u2")])
    assert [(a, i) for _, a, i in error_types(response)] == [("attributes", 0)]
    assert api.profile("u1") is None


def test_rule_custom_attribute_types_are_kept(api):
    """Rule: strings, integers, floats, booleans and dates are stored as sent."""
    api.track(attributes=[attrs(s="x", i=3, f=1.5, b=False, d="2024-05-01T12:00:00Z")])
    assert custom(api) == {"s": "x", "i": 3, "f": 1.5, "b": False, "d": "2024-05-01T12:00:00Z"}


def test_rule_email_format_is_validated(api):
    """Rule: a malformed `email` rejects the object with EMAIL_BAD_FORMAT."""
    response = api.track(attributes=[attrs(email="ada-at-example"), attrs("u2", email="ada@example.com")])
    assert error_types(response) == [("EMAIL_BAD_FORMAT", "attributes", 0)]
    assert api.profile("u2")["email"] == "ada@example.com"


@pytest.mark.parametrize(
    "field, code",
    [("email_subscribe", "BAD_EMAIL_SUBSCRIPTION_STATE"), ("push_subscribe", "BAD_PUSH_SUBSCRIPTION_STATE")],
)
def test_rule_subscription_states_are_validated(api, field, code):
    """Rule: email_subscribe / push_subscribe take opted_in | subscribed | unsubscribed; another value
    gets BAD_EMAIL_SUBSCRIPTION_STATE / BAD_PUSH_SUBSCRIPTION_STATE."""
    response = api.track(attributes=[attrs(**{field: "yes"}), attrs("u2", **{field: "opted_in"})])
    assert error_types(response) == [(code, "attributes", 0)]
    assert api.profile("u2")[field] == "opted_in"


def test_rule_gender_values(api):
    """Rule: gender is one of M F O N P, or null."""
    response = api.track(
        attributes=[attrs("a", gender="F"), attrs("b", gender="female?"), attrs("c", gender=None)]
    )
    assert [(a, i) for _, a, i in error_types(response)] == [("attributes", 1)]
    assert api.profile("a")["gender"] == "F"


def test_rule_dob_is_a_calendar_date(api):
    """Rule: dob is written YYYY-MM-DD and must be a real date."""
    response = api.track(
        attributes=[attrs("a", dob="1980-12-21"), attrs("b", dob="1980-02-30"), attrs("c", dob="21/12/1980")]
    )
    assert [(a, i) for _, a, i in error_types(response)] == [("attributes", 1), ("attributes", 2)]
    assert api.profile("a")["dob"] == "1980-12-21"


def test_rule_country_is_iso_3166_alpha2(api):
    """Rule: country is an ISO-3166-1 alpha-2 code."""
    response = api.track(attributes=[attrs("a", country="FR"), attrs("b", country="France")])
    assert [(a, i) for _, a, i in error_types(response)] == [("attributes", 1)]
    assert api.profile("a")["country"] == "FR"


def test_rule_language_is_iso_639_1(api):
    """Rule: language is an ISO-639-1 code."""
    response = api.track(attributes=[attrs("a", language="de"), attrs("b", language="german")])
    assert [(a, i) for _, a, i in error_types(response)] == [("attributes", 1)]
    assert api.profile("a")["language"] == "de"


def test_rule_invalid_time_zone_is_ignored(api):
    """Rule: time_zone is an IANA name; an invalid one is ignored (not an error, not stored)."""
    response = api.track(attributes=[attrs("a", time_zone="Europe/Paris"), attrs("b", time_zone="Mars/Base")])
    assert response.status_code == 201 and "errors" not in response.json()
    assert api.profile("a")["time_zone"] == "Europe/Paris" and "time_zone" not in api.profile("b")


def test_rule_standard_fields_are_top_level_not_custom(api):
    """Rule: standard profile fields (lower case) are profile fields, not custom attributes."""
    api.track(attributes=[attrs(first_name="Ada", last_name="L", home_city="London", phone="+441234")])
    profile = api.profile("u1")
    assert (profile["first_name"], profile["last_name"], profile["home_city"]) == ("Ada", "L", "London")
    assert profile["custom_attributes"] == {}


def test_rule_subscription_groups(api):
    """Rule: subscription_groups is a list of {subscription_group_id, subscription_state}."""
    groups = [
        {"subscription_group_id": "g1", "subscription_state": "subscribed"},
        {"subscription_group_id": "g2", "subscription_state": "unsubscribed"},
    ]
    response = api.track(
        attributes=[
            attrs("a", subscription_groups=groups),
            attrs("b", subscription_groups=[{"subscription_group_id": "g1"}]),
        ]
    )
    assert [(a, i) for _, a, i in error_types(response)] == [("attributes", 1)]
    assert api.profile("a")["subscription_groups"] == {"g1": "subscribed", "g2": "unsubscribed"}


def test_rule_current_location(api):
    """Rule: current_location is {"longitude": x, "latitude": y}."""
    response = api.track(
        attributes=[
            attrs("a", current_location={"longitude": -73.99, "latitude": 40.75}),
            attrs("b", current_location={"longitude": 500, "latitude": 0}),
        ]
    )
    assert [(a, i) for _, a, i in error_types(response)] == [("attributes", 1)]
