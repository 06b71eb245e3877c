"""Conformance: push token imports, for identified users and as anonymous imports."""

from __future__ import annotations

from tests.sandbox.helpers import attrs, error_types

IOS_TOKEN = "a" * 64
ANDROID_TOKEN = "fcm:APA91bH-example_token-0123456789"


def token(app_id: str = "ios-app", value: str = IOS_TOKEN, **extra) -> dict:
    return {"app_id": app_id, "token": value, **extra}


def test_rule_push_tokens_are_stored_on_the_user(api):
    """Rule: `push_tokens: [{app_id, token, device_id?}]` attaches tokens to the identified user."""
    response = api.track(
        attributes=[attrs(push_tokens=[token(device_id="device-0001"), token("android-app", ANDROID_TOKEN)])]
    )
    assert response.status_code == 201
    assert api.profile("u1")["push_tokens"] == [
        {"app_id": "ios-app", "token": IOS_TOKEN, "device_id": "device-0001"},
        {"app_id": "android-app", "token": ANDROID_TOKEN, "device_id": None},
    ]


def test_rule_anonymous_import_creates_one_profile_per_token(api):
    """Rule: `push_token_import: true` without external_id/braze_id makes a temporary anonymous
    profile per token."""
    response = api.track(
        attributes=[
            {"push_token_import": True, "push_tokens": [token(), token("android-app", ANDROID_TOKEN)]}
        ]
    )
    assert response.status_code == 201
    profiles = list(api.handle.profiles().values())
    assert len(profiles) == 2
    assert all(p["anonymous"] and p["external_id"] is None and len(p["push_tokens"]) == 1 for p in profiles)


def test_rule_anonymous_import_ignores_tokens_already_known(api):
    """Rule: a token Braze already has is ignored by an anonymous import (no new profile)."""
    api.track(attributes=[attrs(push_tokens=[token()])])
    api.track(attributes=[{"push_token_import": True, "push_tokens": [token()]}])
    api.track(attributes=[{"push_token_import": True, "push_tokens": [token("ios-app", "b" * 64)]}])
    api.track(attributes=[{"push_token_import": True, "push_tokens": [token("ios-app", "b" * 64)]}])
    assert len(api.handle.profiles()) == 2
    assert api.profile("u1")["push_tokens"][0]["token"] == IOS_TOKEN


def test_rule_anonymous_import_forbids_external_id_and_braze_id(api):
    """Rule: with `push_token_import: true`, external_id and braze_id must not be given, and a token
    must be: BAD_PUSH_TOKEN_IMPORT otherwise."""
    response = api.track(
        attributes=[
            {"push_token_import": True, "external_id": "u1", "push_tokens": [token()]},
            {"push_token_import": True, "braze_id": "b1", "push_tokens": [token()]},
            {"push_token_import": True},
            {"push_token_import": True, "push_tokens": [token()]},
        ]
    )
    assert error_types(response) == [("BAD_PUSH_TOKEN_IMPORT", "attributes", i) for i in range(3)]


def test_rule_device_id_is_8_to_255_bytes(api):
    """Rule: a push token's device_id, when given, is 8 to 255 bytes; otherwise BAD_DEVICE_ID."""
    response = api.track(
        attributes=[
            attrs("a", push_tokens=[token(device_id="short")]),
            attrs("b", push_tokens=[token(device_id="d" * 256)]),
            attrs("c", push_tokens=[token(device_id="d" * 8)]),
        ]
    )
    assert error_types(response) == [("BAD_DEVICE_ID", "attributes", 0), ("BAD_DEVICE_ID", "attributes", 1)]


def test_rule_bad_app_id_is_rejected(make_api):
    """Rule: a token needs an app_id of a known app: BAD_PUSH_TOKEN_APP_ID otherwise."""
    api = make_api(push_apps={"ios-app": "ios", "web-app": "web"})
    response = api.track(
        attributes=[
            attrs("a", push_tokens=[token("unknown-app")]),
            attrs("b", push_tokens=[{"token": IOS_TOKEN}]),
            attrs("c", push_tokens=[token()]),
        ]
    )
    assert error_types(response) == [
        ("BAD_PUSH_TOKEN_APP_ID", "attributes", 0),
        ("BAD_PUSH_TOKEN_APP_ID", "attributes", 1),
    ]


def test_rule_web_push_tokens_cannot_be_imported(make_api):
    """Rule: only iOS and Android tokens can be imported; web push ones cannot."""
    api = make_api(push_apps={"web-app": "web", "android-app": "android"})
    subscription = '{"endpoint":"https://push.example/abc","keys":{}}'
    response = api.track(
        attributes=[
            attrs("a", push_tokens=[token("web-app", "w" * 40)]),
            attrs("b", push_tokens=[token("android-app", subscription)]),
            attrs("c", push_tokens=[token("android-app", ANDROID_TOKEN)]),
        ]
    )
    assert error_types(response) == [
        ("BAD_PUSH_TOKEN_APP_ID", "attributes", 0),
        ("BAD_PUSH_TOKEN_VALUE", "attributes", 1),
    ]


def test_rule_token_must_be_a_string(api):
    """Rule: a missing, empty or non-string token gets BAD_PUSH_TOKEN_STRING."""
    response = api.track(
        attributes=[
            attrs("a", push_tokens=[token(value="")]),
            attrs("b", push_tokens=[token(value=123)]),
            attrs("c", push_tokens=[token()]),
        ]
    )
    assert error_types(response) == [
        ("BAD_PUSH_TOKEN_STRING", "attributes", 0),
        ("BAD_PUSH_TOKEN_STRING", "attributes", 1),
    ]


def test_rule_token_value_must_fit_its_platform(make_api):
    """Rule: a token an app's platform cannot hold (an iOS token that is not APNs hex, a token with
    spaces) gets BAD_PUSH_TOKEN_VALUE."""
    api = make_api(push_apps={"ios-app": "ios", "android-app": "android"})
    response = api.track(
        attributes=[
            attrs("a", push_tokens=[token("ios-app", "not-hex")]),
            attrs("b", push_tokens=[token("android-app", "has space")]),
            attrs("c", push_tokens=[token()]),
        ]
    )
    assert error_types(response) == [
        ("BAD_PUSH_TOKEN_VALUE", "attributes", 0),
        ("BAD_PUSH_TOKEN_VALUE", "attributes", 1),
    ]


def test_rule_a_token_belongs_to_one_user(api):
    """Rule: a token lives on one profile; sending it for another user moves it there."""
    api.track(attributes=[attrs("a", push_tokens=[token()])])
    api.track(attributes=[attrs("b", push_tokens=[token(device_id="device-0002")])])
    assert api.profile("a")["push_tokens"] == []
    assert api.profile("b")["push_tokens"] == [
        {"app_id": "ios-app", "token": IOS_TOKEN, "device_id": "device-0002"}
    ]


def test_rule_push_subscribe_is_separate_from_tokens(api):
    """Rule: push_subscribe is a per-user preference, independent of the tokens."""
    api.track(attributes=[attrs(push_tokens=[token()], push_subscribe="unsubscribed")])
    profile = api.profile("u1")
    assert profile["push_subscribe"] == "unsubscribed" and len(profile["push_tokens"]) == 1
