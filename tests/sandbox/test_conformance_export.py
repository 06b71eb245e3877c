"""Conformance: `POST /users/export/ids` reads profiles back as Braze exports them."""

from __future__ import annotations

import httpx

from tests.sandbox.helpers import attrs, event, purchase

FIELDS = [
    "external_id",
    "first_name",
    "email",
    "country",
    "email_subscribe",
    "custom_attributes",
    "custom_events",
    "purchases",
    "push_tokens",
    "braze_id",
]


def test_rule_export_answer_shape(api):
    """Rule: the answer is `{"users": [...], "invalid_user_ids": [...], "message": "success"}`;
    unknown ids are listed in invalid_user_ids."""
    api.track(attributes=[attrs("u1", first_name="Ada")])
    response = api.export(external_ids=["u1", "nobody"], fields_to_export=["first_name"])
    assert response.status_code == 201
    assert response.json() == {
        "users": [{"external_id": "u1", "first_name": "Ada"}],
        "invalid_user_ids": ["nobody"],
        "message": "success",
    }


def test_rule_export_standard_fields_top_level_custom_attributes_nested(api):
    """Rule: standard fields are top level; custom attributes come in a `custom_attributes` object."""
    api.track(
        attributes=[
            attrs(
                "u1",
                first_name="Ada",
                email="ada@example.com",
                country="GB",
                email_subscribe="opted_in",
                plan="gold",
                visits={"inc": 3},
            )
        ]
    )
    (user,) = api.export(external_ids=["u1"], fields_to_export=FIELDS).json()["users"]
    assert user["first_name"] == "Ada" and user["email"] == "ada@example.com" and user["country"] == "GB"
    assert user["email_subscribe"] == "opted_in"
    assert user["custom_attributes"] == {"plan": "gold", "visits": 3}
    assert len(user["braze_id"]) == 24


def test_rule_export_only_requested_fields(api):
    """Rule: only the fields listed in fields_to_export are returned (unset ones are left out)."""
    api.track(attributes=[attrs("u1", first_name="Ada", last_name="L", plan="gold")])
    (user,) = api.export(external_ids=["u1"], fields_to_export=["last_name", "dob"]).json()["users"]
    assert user == {"external_id": "u1", "last_name": "L"}


def test_rule_export_events_and_purchases_as_aggregates(api):
    """Rule: custom events and purchases come back only as per-name aggregates {name, first, last,
    count}; a purchase of quantity X counts X."""
    api.track(
        events=[
            event(name="played", time="2024-01-01T00:00:00Z"),
            event(name="played", time="2024-03-01T10:00:00Z"),
            event(name="paused"),
        ],
        purchases=[purchase(product_id="sku-1", quantity=2), purchase(product_id="sku-1")],
    )
    (user,) = api.export(external_ids=["u1"], fields_to_export=["custom_events", "purchases"]).json()["users"]
    events = {e["name"]: e for e in user["custom_events"]}
    assert events["played"] == {
        "name": "played",
        "first": "2024-01-01T00:00:00.000Z",
        "last": "2024-03-01T10:00:00.000Z",
        "count": 2,
    }
    assert events["paused"]["count"] == 1
    assert user["purchases"] == [
        {"name": "sku-1", "first": "2024-05-01T12:00:00.000Z", "last": "2024-05-01T12:00:00.000Z", "count": 3}
    ]


def test_rule_export_push_tokens_shape(api):
    """Rule: push_tokens are exported as [{app, platform, token, device_id}]."""
    api.track(
        attributes=[
            attrs(
                push_tokens=[
                    {"app_id": "ios-app", "token": "f" * 64, "device_id": "dev-00001"},
                    {"app_id": "and-app", "token": "fcm-token-1"},
                ]
            )
        ]
    )
    (user,) = api.export(external_ids=["u1"], fields_to_export=["push_tokens"]).json()["users"]
    assert user["push_tokens"] == [
        {"app": "ios-app", "platform": "ios", "token": "f" * 64, "device_id": "dev-00001"},
        {"app": "and-app", "platform": "android", "token": "fcm-token-1", "device_id": None},
    ]


def test_rule_export_at_most_50_ids(api):
    """Rule: at most 50 external_ids (and user_aliases) per request; more is a 400."""
    response = api.export(external_ids=[f"u{i}" for i in range(51)], fields_to_export=["email"])
    assert response.status_code == 400
    assert "max number" in response.json()["message"]
    ok = api.export(external_ids=[f"u{i}" for i in range(50)], fields_to_export=["email"])
    assert ok.status_code == 201 and len(ok.json()["invalid_user_ids"]) == 50


def test_rule_export_requires_fields_to_export(api):
    """Rule: fields_to_export is required (workspaces created since 2024-08-22); unknown fields
    are refused."""
    assert api.export(external_ids=["u1"]).status_code == 400
    assert api.export(external_ids=["u1"], fields_to_export=["favourite_colour"]).status_code == 400


def test_rule_export_requires_the_key(api):
    """Rule: the export endpoint needs the same Bearer key (401 otherwise)."""
    response = httpx.post(api.handle.url + "/users/export/ids", json={"external_ids": ["u1"]})
    assert response.status_code == 401


def test_rule_export_by_email_and_alias(api):
    """Rule: users may also be named by user_aliases or a single email_address."""
    alias = {"alias_name": "a1", "alias_label": "crm"}
    api.track(
        attributes=[
            attrs("u1", email="ada@example.com"),
            {"user_alias": alias, "_update_existing_only": False, "first_name": "Al"},
        ]
    )
    by_email = api.export(email_address="ada@example.com", fields_to_export=["email"]).json()["users"]
    assert by_email == [{"external_id": "u1", "email": "ada@example.com"}]
    by_alias = api.export(user_aliases=[alias], fields_to_export=["first_name", "user_aliases"]).json()[
        "users"
    ]
    assert by_alias == [{"first_name": "Al", "user_aliases": [alias]}]
