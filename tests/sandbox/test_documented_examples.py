"""Conformance: each example of Braze's documentation that the product relies on, replayed against the sandbox.

Every test names its page (URL) and section, sends the example's request as printed there (placeholders filled
where the page leaves them), and checks the profile Braze says results and the data points it bills. Where a page
states no figure the docstring says so and names the rule the count follows instead (docs/braze-fidelity.md).
"""

from __future__ import annotations

import copy

from tests.sandbox.helpers import error_types

PETS = [
    {"id": 1, "type": "dog", "breed": "beagle", "name": "Gus"},
    {"id": 2, "type": "cat", "breed": "calico", "name": "Gerald"},
]
MORE_PETS = [
    {"id": 3, "type": "dog", "breed": "corgi", "name": "Doug"},
    {"id": 4, "type": "fish", "breed": "salmon", "name": "Larry"},
    {"id": 5, "type": "bird", "breed": "parakeet", "name": "Mary"},
]
UPDATE_4_AND_5 = [
    {"$identifier_key": "id", "$identifier_value": 4, "$new_object": {"breed": "goldfish"}},
    {"$identifier_key": "id", "$identifier_value": 5, "$new_object": {"name": "Annette"}},
]
SONG = {
    "song_name": "Solea",
    "artist_name": "Miles Davis",
    "album_name": "Sketches of Spain",
    "genre": "Jazz",
    "play_analytics": {"count": 1000, "top_10_listeners": True},
}


def post(api, body: dict):
    """POST a documented body as is; return (response, data points it billed)."""
    before = api.stats()["data_points"]
    response = api.http.post("/users/track", json=copy.deepcopy(body))
    return response, api.stats()["data_points"] - before


def custom(api, external_id: str = "user_id") -> dict:
    return api.profile(external_id)["custom_attributes"]


def with_pets(api, items: list[dict]) -> None:
    assert post(api, {"attributes": [{"external_id": "user_id", "pets": items}]})[0].status_code == 201


def test_array_of_objects_create_bills_each_attribute_of_each_object(api):
    """https://www.braze.com/docs/user_guide/data/custom_data/custom_attributes/array_of_objects/
    "API example" > Create, and "Data points" > Create: "Creating a new array logs one data point
    for each attribute in an object. This example logs eight data points"."""
    r, points = post(api, {"attributes": [{"external_id": "user_id", "pets": PETS}]})
    assert r.status_code == 201 and "errors" not in r.json()
    assert custom(api)["pets"] == PETS and points == 8


def test_array_of_objects_add_appends_the_items(api):
    """https://www.braze.com/docs/user_guide/data/custom_data/custom_attributes/array_of_objects/
    "API example" > Add: "adding three more pet objects to the user's pets array". The page's
    "Data points" section gives no figure for `$add`; billed like creating the items (4 attributes x 3)."""
    with_pets(api, PETS)
    r, points = post(api, {"attributes": [{"external_id": "user_id", "pets": {"$add": MORE_PETS}}]})
    assert r.status_code == 201 and custom(api)["pets"] == PETS + MORE_PETS and points == 12


def test_array_of_objects_update_with_merge_objects_keeps_the_other_fields(api):
    """https://www.braze.com/docs/user_guide/data/custom_data/custom_attributes/array_of_objects/
    "API example" > Update: "Since the `_merge_objects` parameter is set to `true`, all other fields
    for these two objects remain the same"; "Data points" > Update: "This example logs two data points"."""
    with_pets(api, PETS + MORE_PETS)
    body = {"attributes": [{"external_id": "user_id", "_merge_objects": True, "pets": {"$update": UPDATE_4_AND_5}}]}
    r, points = post(api, body)
    assert r.status_code == 201 and points == 2
    assert custom(api)["pets"] == PETS + [
        MORE_PETS[0], {**MORE_PETS[1], "breed": "goldfish"}, {**MORE_PETS[2], "name": "Annette"}]


def test_array_of_objects_update_without_merge_objects_overwrites_the_items(api):
    """https://www.braze.com/docs/user_guide/data/custom_data/custom_attributes/array_of_objects/
    "API example" > Update, the warning: "You must set `_merge_objects` to true, or your objects will
    be overwritten. `_merge_objects` is false by default." The same request without the flag leaves each
    matched item as its `$new_object`; billed as the Update example (one per property sent)."""
    with_pets(api, PETS + MORE_PETS)
    r, points = post(api, {"attributes": [{"external_id": "user_id", "pets": {"$update": UPDATE_4_AND_5}}]})
    assert r.status_code == 201 and points == 2
    assert custom(api)["pets"] == PETS + [MORE_PETS[0], {"breed": "goldfish"}, {"name": "Annette"}]


def test_array_of_objects_remove_by_key_and_value_bills_each_criterion(api):
    """https://www.braze.com/docs/user_guide/data/custom_data/custom_attributes/array_of_objects/
    "API example" > Remove: removes "any object in the pets array that has an id with a value of 1,
    an id with a value of 2, and a type with a value of dog ... all matching objects will be removed";
    "Data points" > Remove: "This example logs three data points, even though you may be removing multiple
    dogs"."""
    with_pets(api, PETS + MORE_PETS)
    remove = [{"$identifier_key": "id", "$identifier_value": 1}, {"$identifier_key": "id", "$identifier_value": 2},
              {"$identifier_key": "type", "$identifier_value": "dog"}]
    r, points = post(api, {"attributes": [{"external_id": "user_id", "pets": {"$remove": remove}}]})
    assert r.status_code == 201 and points == 3
    assert custom(api)["pets"] == MORE_PETS[1:]


def test_array_of_objects_operations_run_add_then_remove_then_update(api):
    """https://www.braze.com/docs/user_guide/data/custom_data/custom_attributes/array_of_objects/
    "API example" > "Operation processing order": "Braze processes them in the following order:
    1. Add 2. Remove 3. Update ... if you try to remove an object and add a new object with the same
    identifier in a single request, the add happens first, then the remove may delete what you just added."
    The update of the added item then finds it (Update runs last); billed 4 + 1 + 1."""
    with_pets(api, PETS)
    body = {"attributes": [{"external_id": "user_id", "_merge_objects": True, "pets": {
        "$update": [{"$identifier_key": "id", "$identifier_value": 3, "$new_object": {"name": "Dougie"}}],
        "$remove": [{"$identifier_key": "id", "$identifier_value": 1}],
        "$add": [{"id": 1, "type": "dog", "breed": "beagle", "name": "Rex"}, MORE_PETS[0]],
    }}]}
    r, points = post(api, body)
    assert r.status_code == 201 and points == 8 + 1 + 1
    assert custom(api)["pets"] == [PETS[1], {**MORE_PETS[0], "name": "Dougie"}]


def test_array_of_objects_over_100_kb_drops_the_update_with_success(api):
    """https://www.braze.com/docs/user_guide/data/custom_data/custom_attributes/array_of_objects/
    "Limitations": "Arrays of objects have no limit on the number of items but do have a maximum
    size of 100 KB. If an update (such as `$add` or `$update`) causes the array to exceed this limit, Braze
    drops the update, and the attribute is unchanged. The API request still returns a success response."
    600 small items (over the 500 of a simple array) are kept; nothing is billed for a dropped update."""
    many = [{"id": i} for i in range(600)]
    with_pets(api, many)
    assert custom(api)["pets"] == many
    big = [{"id": 1000 + i, "blob": "x" * 250} for i in range(450)]
    r, points = post(api, {"attributes": [{"external_id": "user_id", "pets": {"$add": big}}]})
    assert r.status_code == 201 and "errors" not in r.json() and points == 0
    assert custom(api)["pets"] == many


def test_array_of_objects_timestamps_use_time(api):
    """https://www.braze.com/docs/user_guide/data/custom_data/custom_attributes/array_of_objects/
    "API example" > Timestamps: "use the `$time` format"; an invalid one drops the whole attribute
    ("Invalid nested custom attributes": "When a nested custom attribute contains any invalid values (such as
    invalid time formats or null values), Braze drops all nested custom attribute updates")."""
    item = {"item_name": "T-shirt", "price": 19.99, "purchase_time": {"$time": "2020-05-28"}}
    r, points = post(api, {"attributes": [{"external_id": "user123", "purchases": [item]}]})
    assert r.status_code == 201 and custom(api, "user123")["purchases"] == [item] and points == 3
    bad = {**item, "purchase_time": {"$time": "28/05/2020"}}
    r, points = post(api, {"attributes": [{"external_id": "user123", "purchases": [bad]}]})
    assert r.status_code == 201 and "errors" not in r.json() and points == 0
    assert custom(api, "user123")["purchases"] == [item]


def test_nested_object_create_bills_each_key_holding_a_value(api):
    """https://www.braze.com/docs/user_guide/data/custom_data/custom_attributes/nested_custom_attribute_support/
    "API example" > Create and "Data points": "Any key that is sent consumes a data point. For
    example, this object initialized in the user profile counts as seven (7) data points" (the Create object
    with `year_released`: `play_analytics` itself is not counted, its two keys are)."""
    song = {**SONG, "year_released": 1960}
    r, points = post(api, {"attributes": [{"external_id": "user_id", "most_played_song": song}]})
    assert r.status_code == 201 and custom(api)["most_played_song"] == song and points == 7


def test_nested_object_update_with_merge_objects_deep_merges(api):
    """https://www.braze.com/docs/user_guide/data/custom_data/custom_attributes/nested_custom_attribute_support/
    "API example" > Update: with `"_merge_objects": true` "This will deep merge your update with the
    existing object data"; the page prints the resulting object. One key sent, one data point."""
    post(api, {"attributes": [{"external_id": "user_id", "most_played_song": SONG}]})
    body = {"attributes": [{"external_id": "user_id", "_merge_objects": True, "most_played_song": {"year_released": 1960}}]}
    r, points = post(api, body)
    assert r.status_code == 201 and points == 1
    assert custom(api)["most_played_song"] == {
        "song_name": "Solea", "artist_name": "Miles Davis", "album_name": "Sketches of Spain", "year_released": 1960,
        "genre": "Jazz", "play_analytics": {"count": 1000, "top_10_listeners": True}}


def test_nested_object_update_without_merge_objects_overwrites(api):
    """https://www.braze.com/docs/user_guide/data/custom_data/custom_attributes/nested_custom_attribute_support/
    "API example" > Update, the warning: "You must set `_merge_objects` to `true`, or your objects
    will be overwritten. `_merge_objects` is `false` by default." """
    post(api, {"attributes": [{"external_id": "user_id", "most_played_song": SONG}]})
    r, points = post(api, {"attributes": [{"external_id": "user_id", "most_played_song": {"year_released": 1960}}]})
    assert r.status_code == 201 and points == 1
    assert custom(api)["most_played_song"] == {"year_released": 1960}


def test_nested_object_delete_with_null_costs_one(api):
    """https://www.braze.com/docs/user_guide/data/custom_data/custom_attributes/nested_custom_attribute_support/
    "API example" > Delete: "send a POST to users/track with the custom attribute object set to
    `null`"; "Data points": "Updating a custom attribute object to `null` also consumes a data point"."""
    post(api, {"attributes": [{"external_id": "user_id", "most_played_song": SONG}]})
    r, points = post(api, {"attributes": [{"external_id": "user_id", "most_played_song": None}]})
    assert r.status_code == 201 and "most_played_song" not in custom(api) and points == 1


def test_nested_object_dates_are_time_objects(api):
    """https://www.braze.com/docs/user_guide/data/custom_data/custom_attributes/nested_custom_attribute_support/
    "Capturing dates as object properties": the "Important Dates" example; "if the value for `$time`
    in a nested custom attribute isn't formatted correctly, the entire nested custom attribute won't be
    updated"."""
    dates = {"birthday": {"$time": "1980-01-01"}, "wedding_anniversary": {"$time": "2020-05-28"}}
    r, points = post(api, {"attributes": [{"external_id": "time_with_nca_test", "important_dates": dates}]})
    assert r.status_code == 201 and custom(api, "time_with_nca_test")["important_dates"] == dates and points == 2
    bad = {"birthday": {"$time": "not a date"}, "wedding_anniversary": {"$time": "2021-05-28"}}
    r, points = post(api, {"attributes": [{"external_id": "time_with_nca_test", "important_dates": bad}]})
    assert r.status_code == 201 and points == 0
    assert custom(api, "time_with_nca_test")["important_dates"] == dates


def test_nested_object_invalid_keys_and_values_are_dropped_with_201(api):
    """https://www.braze.com/docs/user_guide/data/custom_data/custom_attributes/nested_custom_attribute_support/
    "Considerations": "Key names cannot contain spaces. Periods (`.`) and dollar signs (`$`) aren't
    supported characters"; and https://www.braze.com/docs/api/endpoints/user_data/post_user_track/
    "How does /users/track handle invalid nested custom attributes?": "all nested custom attribute updates in
    the request will be dropped from processing. This applies to all nested structures within that specific
    attribute." The request still succeeds; the other attributes of the object are written and billed."""
    for bad in ({"song name": "Solea"}, {"song.name": "Solea"}, {"$song": "Solea"}, {"song_name": None}):
        r, points = post(api, {"attributes": [{"external_id": "user_id", "most_played_song": bad, "plan": "gold"}]})
        assert r.status_code == 201 and "errors" not in r.json() and points == 1
        assert custom(api) == {"plan": "gold"}


def test_nested_object_over_100_kb_drops_the_update(api):
    """https://www.braze.com/docs/user_guide/data/custom_data/custom_attributes/nested_custom_attribute_support/
    "Considerations": "Objects have a maximum size of 100 KB. If an update causes the object to exceed
    100 KB, Braze drops the update, and the attribute is unchanged." Also for a merge whose result grows
    past it."""
    post(api, {"attributes": [{"external_id": "user_id", "notes": {"a": "x" * 60_000}}]})
    r, points = post(api, {"attributes": [{"external_id": "user_id", "notes": {"b": "y" * 110_000}}]})
    assert r.status_code == 201 and points == 0 and custom(api)["notes"] == {"a": "x" * 60_000}
    r, _ = post(api, {"attributes": [{"external_id": "user_id", "_merge_objects": True, "notes": {"b": "y" * 60_000}}]})
    assert r.status_code == 201 and custom(api)["notes"] == {"a": "x" * 60_000}


def test_track_by_email_example_with_events_and_purchases(api):
    """https://www.braze.com/docs/api/endpoints/user_data/post_user_track/
    "Example requests" > "Update a user profile by email address": the email identifies (and, with no
    profile yet, creates an email-only user: "What happens if no profile with the email address currently
    exists?"). And https://www.braze.com/docs/user_guide/data/data_points/ "Billable data points": each custom
    attribute (4), each event and purchase with each of its properties (1 + 2, and 1 + 5); the identifying email
    is not an attribute written. The second event names an alias with no profile and no
    `_update_existing_only: false`: processed, nothing created, nothing billed."""
    body = {
        "attributes": [{"email": "test@braze.com", "string_attribute": "fruit", "boolean_attribute_1": True,
                        "integer_attribute": 26, "array_attribute": ["banana", "apple"]}],
        "events": [
            {"email": "test@braze.com", "app_id": "your_app_identifier", "name": "rented_movie",
             "time": "2022-12-06T19:20:45+01:00",
             "properties": {"release": {"studio": "FilmStudio", "year": "2022"},
                            "cast": [{"name": "Actor1"}, {"name": "Actor2"}]}},
            {"user_alias": {"alias_name": "device123", "alias_label": "my_device_identifier"},
             "app_id": "your_app_identifier", "name": "rented_movie", "time": "2013-07-16T19:20:50+01:00"},
        ],
        "purchases": [{"email": "test@braze.com", "app_id": "your_app_identifier", "product_id": "product_name",
                       "currency": "USD", "price": 12.12, "quantity": 6, "time": "2017-05-12T18:47:12Z",
                       "properties": {"color": "red", "monogram": "ABC", "checkout_duration": 180, "size": "Large",
                                      "brand": "Backpack Locker"}}],
    }
    r, points = post(api, body)
    assert r.status_code == 201 and r.json()["events_processed"] == 2 and r.json()["purchases_processed"] == 1
    assert points == 4 + 3 + 6
    [user] = [p for p in api.handle.profiles().values() if p.get("email") == "test@braze.com"]
    assert user["external_id"] is None and user["custom_attributes"] == {
        "string_attribute": "fruit", "boolean_attribute_1": True, "integer_attribute": 26,
        "array_attribute": ["banana", "apple"]}
    assert [e["name"] for e in user["events"]] == ["rented_movie"]
    assert user["purchases"][0]["product_id"] == "product_name" and user["purchases"][0]["quantity"] == 6
    assert len(api.handle.profiles()) == 1


def test_track_set_subscription_groups_example(api):
    """https://www.braze.com/docs/api/endpoints/user_data/post_user_track/
    "Example requests" > "Set subscription groups": creates the user with its email, email_subscribe
    and three group states. And https://www.braze.com/docs/user_guide/data/data_points/ "Consumption count":
    "Subscription state changes globally and around subscription groups" log no data points; the email costs
    one."""
    body = {"attributes": [{
        "external_id": "user_identifier", "email": "example@email.com", "email_subscribe": "subscribed",
        "subscription_groups": [
            {"subscription_group_id": "subscription_group_identifier_1", "subscription_state": "unsubscribed"},
            {"subscription_group_id": "subscription_group_identifier_2", "subscription_state": "subscribed"},
            {"subscription_group_id": "subscription_group_identifier_3", "subscription_state": "subscribed"}],
    }]}
    r, points = post(api, body)
    assert r.status_code == 201 and points == 1
    user = api.profile("user_identifier")
    assert user["email"] == "example@email.com" and user["email_subscribe"] == "subscribed"
    assert user["subscription_groups"] == {"subscription_group_identifier_1": "unsubscribed",
                                           "subscription_group_identifier_2": "subscribed",
                                           "subscription_group_identifier_3": "subscribed"}


def test_track_alias_only_user_example(api):
    """https://www.braze.com/docs/api/endpoints/user_data/post_user_track/
    "Example request to create an alias-only user": with `_update_existing_only: false` the alias-only
    profile is created; "If this value is omitted, the alias-only user profile will not be created"."""
    alias = {"alias_name": "example_name", "alias_label": "example_label"}
    r, _ = post(api, {"attributes": [{"user_alias": alias, "email": "email@example.com"}]})
    assert r.status_code == 201 and api.handle.profiles() == {}
    r, points = post(api, {"attributes": [{"_update_existing_only": False, "user_alias": alias,
                                           "email": "email@example.com"}]})
    assert r.status_code == 201 and points == 1
    assert api.handle.profiles()["alias:example_label:example_name"]["email"] == "email@example.com"


def test_push_token_import_without_external_id_example(api):
    """https://www.braze.com/docs/user_guide/message_building_by_channel/push/push_token_migration/
    "Migration via API" > "External ID missing": `push_token_import: true`, no external_id, one
    temporary anonymous profile per token ("If the token already exists in Braze, the request is ignored").
    The page's placeholders are filled with two distinct tokens. Push tokens are not billable
    (https://www.braze.com/docs/user_guide/data/data_points/ "Definition"); email, country, language and the
    custom attributes are (4 and 5)."""
    body = {"attributes": [
        {"push_token_import": True, "email": "braze.test1@testbraze.com", "country": "US", "language": "en",
         "YOUR_CUSTOM_ATTRIBUTE": "YOUR_VALUE",
         "push_tokens": [{"app_id": "APP_ID_OF_OS", "token": "PUSH_TOKEN_STRING_1", "device_id": "DEVICE_ID_1"}]},
        {"push_token_import": True, "email": "braze.test2@testbraze.com", "country": "US", "language": "en",
         "YOUR_CUSTOM_ATTRIBUTE_1": "YOUR_VALUE", "YOUR_CUSTOM_ATTRIBUTE_2": "YOUR_VALUE",
         "push_tokens": [{"app_id": "APP_ID_OF_OS", "token": "PUSH_TOKEN_STRING_2", "device_id": "DEVICE_ID_2"}]},
    ]}
    r, points = post(api, body)
    assert r.status_code == 201 and points == 4 + 5
    users = sorted(api.handle.profiles().values(), key=lambda p: p["email"])
    assert [(u["anonymous"], u["external_id"], u["push_tokens"][0]["token"]) for u in users] == [
        (True, None, "PUSH_TOKEN_STRING_1"), (True, None, "PUSH_TOKEN_STRING_2")]
    r, points = post(api, body)
    assert r.status_code == 201 and points == 0 and len(api.handle.profiles()) == 2


def test_track_without_any_object_is_a_400(api):
    """https://www.braze.com/docs/api/endpoints/user_data/post_user_track/
    "Request body": every array is optional, but a request must carry data: with none the answer is
    a fatal error ("Message with fatal errors"), so a client's empty probe lands in the API usage log as a
    failure. Braze's message: "Valid data must be provided in the 'attributes', 'events', or 'purchases'
    fields."."""
    for body in ({}, {"attributes": []}, {"attributes": [], "events": [], "purchases": []}):
        r = api.http.post("/users/track", json=body)
        assert r.status_code == 400 and r.json()["message"].startswith("Valid data must be provided")
    assert api.stats()["data_points"] == 0


def test_delete_example_answers_the_ids_queued(api):
    """https://www.braze.com/docs/api/endpoints/user_data/post_user_delete/
    "Example request" and "Response": `{"deleted": number of user IDs queued for deletion}`; the
    profiles and their attributes are gone. And https://www.braze.com/docs/user_guide/data/data_points/
    "Consumption count": "Deleting users from Braze" logs no data point. (The page allows one kind of
    identifier per request; the example's external_ids are used.)"""
    for eid in ("external_identifier1", "external_identifier2"):
        post(api, {"attributes": [{"external_id": eid, "plan": "gold"}]})
    before = api.stats()["data_points"]
    r = api.http.post("/users/delete", json={"external_ids": ["external_identifier1", "external_identifier2"]})
    assert r.status_code == 201 and r.json()["deleted"] == 2
    assert api.handle.profiles() == {} and api.stats()["data_points"] == before


def test_rejected_object_is_named_and_the_rest_processed(api):
    """https://www.braze.com/docs/api/endpoints/user_data/post_user_track/
    "Successful message with non-fatal errors": "any data not affected by an error in the `errors`
    array will still be processed"."""
    r, points = post(api, {"attributes": [{"external_id": "a", "email": "not-an-email", "plan": "gold"},
                                          {"external_id": "b", "plan": "gold"}]})
    assert r.status_code == 201 and error_types(r) == [("EMAIL_BAD_FORMAT", "attributes", 0)]
    assert api.profile("a") is None and custom(api, "b") == {"plan": "gold"} and points == 1
