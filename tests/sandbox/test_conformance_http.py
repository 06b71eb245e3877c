"""Conformance: authentication, routing, request size and the shape of `/users/track` answers."""

from __future__ import annotations

import httpx

from tests.sandbox.helpers import KEY, attrs, error_types, event, purchase


def test_rule_missing_key_is_401_with_json_message(api):
    """Rule: a request without `Authorization: Bearer KEY` gets 401 and a JSON `message`."""
    response = httpx.post(api.handle.url + "/users/track", json={"attributes": [attrs()]})
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/json"
    assert isinstance(response.json()["message"], str)
    assert api.profile("u1") is None


def test_rule_wrong_key_is_401(api):
    """Rule: an unknown REST API key gets 401, and nothing is stored."""
    response = httpx.post(
        api.handle.url + "/users/track",
        json={"attributes": [attrs()]},
        headers={"Authorization": "Bearer not-the-key"},
    )
    assert response.status_code == 401
    assert "message" in response.json()
    assert api.profile("u1") is None


def test_rule_key_never_echoed_in_answers(api):
    """Rule: secrets stay out of answers: a 401 does not repeat the key that was sent."""
    response = httpx.post(
        api.handle.url + "/users/track", json={}, headers={"Authorization": "Bearer s3cr3t-value"}
    )
    assert "s3cr3t-value" not in response.text


def test_rule_unknown_path_is_404(api):
    """Rule: a bad URL gets 404 (braze-api.md: stop the run with a configuration error)."""
    response = api.http.post("/users/trak", json={"attributes": [attrs()]})
    assert response.status_code == 404
    assert "message" in response.json()


def test_rule_track_accepts_post_only(api):
    """Rule: /users/track is a POST endpoint; another method is refused (405) and changes nothing."""
    assert api.http.get("/users/track").status_code == 405


def test_rule_body_over_4mb_is_413(api):
    """Rule: a body over 4 MB gets 413 (Request Entity Too Large) and is not applied."""
    big = "x" * (4 * 1024 * 1024)
    response = api.track(attributes=[attrs(note=big)])
    assert response.status_code == 413
    assert api.profile("u1") is None


def test_rule_bad_json_is_400(api):
    """Rule: a body that is not JSON gets 400 with a `message` and `errors`."""
    response = api.http.post(
        "/users/track", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    body = response.json()
    assert body["message"] and body["errors"]


def test_rule_body_must_be_an_object_with_arrays(api):
    """Rule: `attributes`, `events` and `purchases` are arrays; anything else is a 400."""
    assert api.http.post("/users/track", json=[attrs()]).status_code == 400
    assert api.track(attributes=attrs()).status_code == 400


def test_rule_success_answer_shape(api):
    """Rule: success is 201 `{"message":"success","attributes_processed":n,"events_processed":n,
    "purchases_processed":n}` without `errors`."""
    response = api.track(attributes=[attrs()], events=[event(), event()], purchases=[purchase()])
    assert response.status_code == 201
    assert response.json() == {
        "message": "success",
        "attributes_processed": 1,
        "events_processed": 2,
        "purchases_processed": 1,
    }


def test_rule_partial_success_is_201_with_errors_by_index_as_sent(api):
    """Rule: when some objects are valid, 201 with `errors[]` = {type, input_array, index} where
    index is the position in the array as sent; the others are processed."""
    response = api.track(
        attributes=[attrs("a"), attrs("b", email="not-an-email"), attrs("c")],
        events=[event("a"), {"external_id": "a", "time": "2024-01-01T00:00:00Z"}],
        purchases=[purchase("a", currency="XYZ"), purchase("a")],
    )
    assert response.status_code == 201
    body = response.json()
    assert body["message"] == "success"
    assert (body["attributes_processed"], body["events_processed"], body["purchases_processed"]) == (2, 1, 1)
    assert [(e["input_array"], e["index"]) for e in body["errors"]] == [
        ("attributes", 1),
        ("events", 1),
        ("purchases", 0),
    ]
    assert all(isinstance(e["type"], str) and e["type"] for e in body["errors"])
    assert api.profile("b") is None and api.profile("c") is not None


def test_rule_no_valid_object_is_400(api):
    """Rule: when no object at all is valid, the answer is 400 with `message` and the `errors`."""
    response = api.track(attributes=[attrs(email="bad")], events=[{"external_id": "u1"}])
    assert response.status_code == 400
    found = error_types(response)
    assert found[0] == ("EMAIL_BAD_FORMAT", "attributes", 0)
    assert found[1][1:] == ("events", 0)
    assert response.json()["message"] != "success"


def test_rule_empty_request_is_400(api):
    """Rule: a request without any object is refused (400): there is nothing valid to process."""
    response = api.track(attributes=[], events=[], purchases=[])
    assert response.status_code == 400


def test_rule_processing_order_attributes_then_events_then_purchases(api):
    """Rule: inside one request attributes are processed first, then events, then purchases; so an
    update-only event finds the user its request's attributes created, whatever the body order."""
    body = {
        "purchases": [purchase("new", _update_existing_only=True)],
        "events": [event("new", _update_existing_only=True)],
        "attributes": [attrs("new", first_name="Ada")],
    }
    assert api.http.post("/users/track", json=body).status_code == 201
    profile = api.profile("new")
    assert len(profile["events"]) == 1 and len(profile["purchases"]) == 1


def test_rule_answers_are_json(api):
    """Rule: every answer of the Braze endpoints is a JSON document (`application/json`)."""
    for response in (
        api.track(attributes=[attrs()]),
        api.track(),
        api.http.post("/nope"),
        httpx.post(api.handle.url + "/users/track", json={}, headers={"Authorization": "Bearer x"}),
    ):
        assert response.headers["content-type"] == "application/json"
        response.json()


def test_rule_sandbox_hooks_need_no_key(api):
    """Rule (sandbox): the `/_sandbox/*` test hooks answer without the Braze key."""
    assert httpx.get(api.handle.url + "/_sandbox/stats").status_code == 200
    assert httpx.get(api.handle.url + "/_sandbox/health").json() == {"status": "ok"}
    assert KEY not in httpx.get(api.handle.url + "/_sandbox/config").text
