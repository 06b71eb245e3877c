"""Conformance: which user an object names, and when it may create that user."""

from __future__ import annotations

from tests.sandbox.helpers import attrs, error_types, event, purchase

ALIAS = {"alias_name": "device-123", "alias_label": "legacy_id"}


def test_rule_more_than_one_primary_identifier_rejects_the_object(api):
    """Rule: exactly one of external_id | user_alias | braze_id; more than one rejects the object."""
    response = api.track(
        attributes=[{"external_id": "u1", "user_alias": ALIAS, "first_name": "A"}, attrs("u2")],
        events=[event(braze_id="abc")],
    )
    assert response.status_code == 201
    assert [(a, i) for _, a, i in error_types(response)] == [("attributes", 0), ("events", 0)]
    assert api.profile("u1") is None and api.profile("u2") is not None


def test_rule_object_without_identifier_is_rejected(api):
    """Rule: every object carries its own user identifier; one without any is rejected."""
    response = api.track(attributes=[{"first_name": "A"}, attrs()])
    assert [(a, i) for _, a, i in error_types(response)] == [("attributes", 0)]


def test_rule_external_id_creates_the_user(api):
    """Rule: an external_id that Braze does not know creates the user (`_update_existing_only` false)."""
    api.track(events=[event("fresh")])
    assert len(api.profile("fresh")["events"]) == 1


def test_rule_update_existing_only_true_does_not_create(api):
    """Rule: `_update_existing_only: true` updates existing users only; it is still 'processed'."""
    response = api.track(attributes=[attrs("ghost", first_name="A", _update_existing_only=True)])
    assert response.status_code == 201 and response.json()["attributes_processed"] == 1
    assert api.profile("ghost") is None
    api.track(attributes=[attrs("ghost")])
    api.track(attributes=[attrs("ghost", first_name="B", _update_existing_only=True)])
    assert api.profile("ghost")["first_name"] == "B"


def test_rule_alias_only_user_needs_update_existing_only_false(api):
    """Rule: a user_alias creates an alias-only user only with `"_update_existing_only": false`."""
    api.track(attributes=[{"user_alias": ALIAS, "first_name": "Nobody"}])
    assert api.handle.profiles() == {}
    api.track(attributes=[{"user_alias": ALIAS, "first_name": "Alias", "_update_existing_only": False}])
    profiles = api.handle.profiles()
    assert list(profiles) == ["alias:legacy_id:device-123"]
    assert profiles["alias:legacy_id:device-123"]["user_aliases"] == [ALIAS]
    api.track(events=[{"user_alias": ALIAS, "name": "seen", "time": "2024-01-01T00:00:00Z"}])
    assert len(api.handle.profiles()["alias:legacy_id:device-123"]["events"]) == 1


def test_rule_braze_id_updates_but_never_creates(api):
    """Rule: braze_id identifies an existing user and never creates one."""
    api.track(attributes=[{"braze_id": "000000000000000000000fff", "first_name": "X"}])
    assert api.handle.profiles() == {}
    api.track(attributes=[attrs("u1")])
    braze_id = api.profile("u1")["braze_id"]
    api.track(attributes=[{"braze_id": braze_id, "first_name": "ById"}])
    assert api.profile("u1")["first_name"] == "ById"


def test_rule_email_identifies_only_without_primary_identifier(api):
    """Rule: `email` identifies the user only when no primary identifier is present; with one, it
    is an attribute of that user."""
    api.track(attributes=[attrs("u1", email="ada@example.com")])
    api.track(attributes=[{"email": "ada@example.com", "first_name": "Ada"}])
    assert api.profile("u1")["first_name"] == "Ada"
    api.track(attributes=[attrs("u2", email="ada@example.com")])
    assert api.profile("u2")["email"] == "ada@example.com"
    assert len(api.handle.profiles()) == 2


def test_rule_email_fallback_prefers_most_recent_identified_profile(api):
    """Rule: with several profiles on one email, the most recently updated one with an external_id wins."""
    api.track(attributes=[attrs("old", email="x@example.com")])
    api.track(attributes=[attrs("new", email="x@example.com")])
    api.track(events=[{"email": "x@example.com", "name": "clicked", "time": "2024-01-01T00:00:00Z"}])
    assert len(api.profile("new")["events"]) == 1 and api.profile("old")["events"] == []


def test_rule_email_without_profile_creates_email_only_user(api):
    """Rule: an email no profile has creates an email-only user (no alias, no external_id)."""
    api.track(attributes=[{"email": "solo@example.com", "first_name": "Solo"}])
    (profile,) = api.handle.profiles().values()
    assert profile["external_id"] is None and profile["email"] == "solo@example.com"
    assert profile["user_aliases"] == []


def test_rule_phone_identifies_when_no_email_and_no_primary(api):
    """Rule: `phone` identifies the user when there is no primary identifier and no email."""
    api.track(attributes=[attrs("p1", phone="+15043277269")])
    api.track(
        purchases=[
            {
                "phone": "+15043277269",
                "product_id": "sku",
                "currency": "USD",
                "price": 1,
                "time": "2024-01-01T00:00:00Z",
            }
        ]
    )
    assert len(api.profile("p1")["purchases"]) == 1


def test_rule_email_wins_over_phone(api):
    """Rule: with both email and phone and no primary identifier, Braze uses the email."""
    api.track(attributes=[attrs("by-email", email="e@example.com"), attrs("by-phone", phone="+15550000001")])
    api.track(
        events=[
            {"email": "e@example.com", "phone": "+15550000001", "name": "x", "time": "2024-01-01T00:00:00Z"}
        ]
    )
    assert len(api.profile("by-email")["events"]) == 1 and api.profile("by-phone")["events"] == []


def test_rule_external_id_over_987_bytes_is_too_large(api):
    """Rule: an external_id over 987 bytes is rejected with EXTERNAL_USER_ID_TOO_LARGE."""
    response = api.track(attributes=[attrs("é" * 494), attrs("ok")])
    assert error_types(response) == [("EXTERNAL_USER_ID_TOO_LARGE", "attributes", 0)]
    assert api.track(attributes=[attrs("a" * 987)]).status_code == 201


def test_rule_blacklisted_external_id_is_rejected(api):
    """Rule: a dummy external_id ("null", "undefined", ...) is refused with BLACKLISTED_EXTERNAL_USER_ID."""
    response = api.track(attributes=[attrs("undefined"), attrs("real")])
    assert error_types(response) == [("BLACKLISTED_EXTERNAL_USER_ID", "attributes", 0)]


def test_rule_external_id_is_text_and_kept_exactly(api):
    """Rule: external_id is a non-empty string, kept as sent ("000123" stays "000123")."""
    response = api.track(attributes=[attrs(123), attrs(""), attrs("000123")])
    assert [(a, i) for _, a, i in error_types(response)] == [("attributes", 0), ("attributes", 1)]
    assert "000123" in api.handle.profiles()


def test_rule_update_existing_only_must_be_boolean(api):
    """Rule: `_update_existing_only` is a boolean flag; another value rejects the object."""
    response = api.track(attributes=[attrs("u1", _update_existing_only="yes"), attrs("u2")])
    assert [(a, i) for _, a, i in error_types(response)] == [("attributes", 0)]


def test_rule_purchase_and_event_identifiers_follow_the_same_rules(api):
    """Rule: events and purchases carry their own identifier under the same rules as attributes."""
    response = api.track(events=[event(user_alias=ALIAS)], purchases=[purchase(braze_id="x"), purchase("ok")])
    assert [(a, i) for _, a, i in error_types(response)] == [("events", 0), ("purchases", 0)]
