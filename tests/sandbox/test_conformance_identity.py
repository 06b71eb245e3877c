"""Conformance: the identity endpoints, as Braze documents them.

- /users/identify: https://www.braze.com/docs/api/endpoints/user_data/post_user_identify/ ("How it works",
  "Merging behavior")
- /users/alias/new: https://www.braze.com/docs/api/endpoints/user_data/post_user_alias/
- /users/external_ids/rename and /remove:
  https://www.braze.com/docs/api/endpoints/user_data/external_id_migration/post_external_ids_rename/ and
  .../post_external_ids_remove/ (the rules under "Request parameters")
- /users/delete by email or phone, one identifier kind per request:
  https://www.braze.com/docs/api/endpoints/user_data/post_user_delete/
"""

from __future__ import annotations

from tests.sandbox.helpers import attrs, event

ALIAS = {"alias_name": "dev-1", "alias_label": "legacy_id"}


def post(api, path, **body):
    return api.http.post(path, json=body)


def alias_user(api, **fields):
    api.track(attributes=[{"user_alias": ALIAS, "_update_existing_only": False, **fields}],
              events=[{"user_alias": ALIAS, "name": "seen", "time": "2024-01-01T00:00:00Z"}])


def test_rule_identify_without_a_user_of_that_external_id_identifies_the_alias_user(api):
    alias_user(api, first_name="Ann")
    r = post(api, "/users/identify", aliases_to_identify=[{"external_id": "u1", "user_alias": ALIAS}])
    assert r.status_code == 201 and r.json() == {"aliases_processed": 1, "message": "success"}
    profile = api.profile("u1")
    assert profile["first_name"] == "Ann" and profile["user_aliases"] == [ALIAS] and len(profile["events"]) == 1
    assert len(api.handle.profiles()) == 1


def test_rule_identify_combines_into_the_identified_user_fields_only_the_alias_user_has(api):
    alias_user(api, first_name="Ann", city="Oslo", tier="gold")
    api.track(attributes=[attrs("u1", first_name="Anna", tier="silver")], events=[event("u1")])
    post(api, "/users/identify", aliases_to_identify=[{"external_id": "u1", "user_alias": ALIAS}])
    profile = api.profile("u1")
    assert profile["first_name"] == "Anna"  # the identified user's value is kept
    assert profile["custom_attributes"] == {"tier": "silver", "city": "Oslo"}
    assert len(profile["events"]) == 2 and profile["user_aliases"] == [ALIAS]
    assert len(api.handle.profiles()) == 1  # the alias-only profile is removed


def test_rule_identify_does_not_combine_when_the_user_has_an_alias_of_that_label(api):
    alias_user(api, first_name="Ann")
    api.track(attributes=[attrs("u1")])
    other = {"alias_name": "dev-2", "alias_label": "legacy_id"}
    post(api, "/users/alias/new", user_aliases=[{**other, "external_id": "u1"}])
    post(api, "/users/identify", aliases_to_identify=[{"external_id": "u1", "user_alias": ALIAS}])
    assert len(api.handle.profiles()) == 2 and api.profile("u1")["user_aliases"] == [other]


def test_rule_identify_takes_at_most_50_and_needs_both_parts(api):
    item = {"external_id": "u1", "user_alias": ALIAS}
    assert post(api, "/users/identify", aliases_to_identify=[item] * 51).status_code == 400
    assert post(api, "/users/identify", aliases_to_identify=[{"external_id": "u1"}]).status_code == 400


def test_rule_alias_new_creates_an_alias_only_user_or_adds_the_alias_to_a_user(api):
    api.track(attributes=[attrs("u1")])
    post(api, "/users/alias/new", user_aliases=[ALIAS, {"alias_name": "x", "alias_label": "l", "external_id": "u1"},
                                                {"alias_name": "y", "alias_label": "l", "external_id": "nobody"}])
    assert api.handle.profiles()["alias:legacy_id:dev-1"]["external_id"] is None
    assert api.profile("u1")["user_aliases"] == [{"alias_name": "x", "alias_label": "l"}]
    assert len(api.handle.profiles()) == 2


def test_rule_rename_makes_the_new_id_primary_and_keeps_the_old_one_deprecated(api):
    api.track(attributes=[attrs("old", first_name="Ann")])
    r = post(api, "/users/external_ids/rename",
             external_id_renames=[{"current_external_id": "old", "new_external_id": "new"}])
    assert r.status_code == 201 and r.json() == {"message": "success", "external_ids": ["old"], "rename_errors": []}
    assert api.profile("new")["first_name"] == "Ann"
    # The deprecated id still names the user: a write under it updates the same profile.
    api.track(attributes=[attrs("old", last_name="Lee")])
    assert api.profile("new")["last_name"] == "Lee" and len(api.handle.profiles()) == 1
    exported = api.export(external_ids=["old"], fields_to_export=["external_id"]).json()["users"]
    assert [u["external_id"] for u in exported] == ["new"]


def test_rule_rename_errors_name_each_refused_rename(api):
    api.track(attributes=[attrs("a"), attrs("b")])
    post(api, "/users/external_ids/rename", external_id_renames=[{"current_external_id": "a", "new_external_id": "a2"}])
    r = post(api, "/users/external_ids/rename", external_id_renames=[
        {"current_external_id": "a", "new_external_id": "a3"},      # deprecated: not a primary id
        {"current_external_id": "b", "new_external_id": "a2"},      # already in use
        {"current_external_id": "b", "new_external_id": "b"},       # the same
        {"current_external_id": "nobody", "new_external_id": "n2"},
    ])
    body = r.json()
    assert r.status_code == 201 and body["external_ids"] == []
    assert [e[0] for e in body["rename_errors"]] == ["a", "b", "b", "nobody"]
    many = [{"current_external_id": f"x{i}", "new_external_id": f"y{i}"} for i in range(51)]
    assert post(api, "/users/external_ids/rename", external_id_renames=many).status_code == 400


def test_rule_remove_drops_deprecated_ids_only(api):
    api.track(attributes=[attrs("old")])
    post(api, "/users/external_ids/rename", external_id_renames=[{"current_external_id": "old", "new_external_id": "new"}])
    r = post(api, "/users/external_ids/remove", external_ids=["old", "new"])
    assert r.json()["removed_ids"] == ["old"] and [e[0] for e in r.json()["removal_errors"]] == ["new"]
    assert api.profile("new") is not None
    assert api.export(external_ids=["old"], fields_to_export=["external_id"]).json()["users"] == []


def test_rule_rename_and_remove_have_their_own_limit_identify_shares_the_delete_limit(make_api):
    api = make_api(delete_rate_limit="2/60s")
    codes = [post(api, "/users/identify", aliases_to_identify=[{"external_id": "u", "user_alias": ALIAS}]).status_code,
             post(api, "/users/delete", external_ids=["x"]).status_code,
             post(api, "/users/alias/new", user_aliases=[ALIAS]).status_code]
    assert codes == [201, 201, 429]
    rename = [{"current_external_id": "nobody", "new_external_id": "n"}]
    assert post(api, "/users/external_ids/rename", external_id_renames=rename).status_code == 201


def test_rule_delete_by_email_or_phone_one_kind_per_request(api):
    api.track(attributes=[attrs("u1", email="a@example.com"), {"phone": "+4930123456", "first_name": "P"}])
    assert post(api, "/users/delete", external_ids=["u1"], email_addresses=["a@example.com"]).status_code == 400
    assert post(api, "/users/delete", email_addresses=["A@example.com"]).json()["deleted"] == 1
    assert post(api, "/users/delete", phone_numbers=["+4930123456"]).json()["deleted"] == 1
    assert api.handle.profiles() == {}
