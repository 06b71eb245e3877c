"""Conformance: `POST /users/delete` (at most 50 identifiers, its own rate limit, idempotent, not billed)."""

from __future__ import annotations

from tests.sandbox.helpers import attrs, event


def delete(api, **body):
    return api.http.post("/users/delete", json=body)


def test_rule_delete_removes_the_profiles_it_names_and_counts_the_ids_queued(api):
    """Rule: `deleted` is the "number of user IDs queued for deletion", known or not
    (https://www.braze.com/docs/api/endpoints/user_data/post_user_delete/, "Response")."""
    api.track(attributes=[attrs("u1", city="Oslo"), attrs("u2", city="Rome")], events=[event("u1")])
    r = delete(api, external_ids=["u1", "nobody"])
    assert r.status_code == 201 and r.json() == {"deleted": 2, "message": "success"}
    assert api.profile("u1") is None and api.profile("u2") is not None
    assert api.stats()["events_stored"] == 0


def test_rule_deleting_twice_is_harmless(api):
    api.track(attributes=[attrs("u1", city="Oslo")])
    assert delete(api, external_ids=["u1"]).status_code == 201
    assert delete(api, external_ids=["u1"]).status_code == 201 and api.profile("u1") is None


def test_rule_at_most_50_identifiers_per_request(api):
    r = delete(api, external_ids=[f"u{i}" for i in range(51)])
    assert r.status_code == 400
    assert delete(api).status_code == 400


def test_rule_needs_the_api_key(api):
    r = api.http.post("/users/delete", json={"external_ids": ["u1"]}, headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401


def test_rule_delete_has_its_own_rate_limit(make_api):
    api = make_api(delete_rate_limit="2/60s")
    assert [delete(api, external_ids=["x"]).status_code for _ in range(3)] == [201, 201, 429]
    assert api.track(attributes=[attrs("u1", city="Oslo")]).status_code == 201
