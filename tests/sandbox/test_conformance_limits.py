"""Conformance: objects per request under the three contract modes."""

from __future__ import annotations

from tests.sandbox.helpers import attrs, event, purchase


def many(builder, count: int) -> list[dict]:
    return [builder(f"u{i}") for i in range(count)]


def assert_too_many(response) -> None:
    assert response.status_code == 400
    body = response.json()
    assert body["message"] == "Max Input Length Exceeded"
    assert body["errors"]


def test_rule_default_mode_is_75_objects_combined(api):
    """Rule: by default at most 75 objects combined across the three arrays; above is a 400
    "Max Input Length Exceeded" and nothing is applied."""
    assert (
        api.track(
            attributes=many(attrs, 25), events=many(event, 25), purchases=many(purchase, 25)
        ).status_code
        == 201
    )
    api.handle.reset()
    assert_too_many(
        api.track(attributes=many(attrs, 26), events=many(event, 25), purchases=many(purchase, 25))
    )
    assert api.handle.profiles() == {}


def test_rule_per_array_mode_is_75_per_array(make_api):
    """Rule: legacy contracts allow 75 objects per array (225 in all)."""
    api = make_api(mode="per_array75")
    assert (
        api.track(
            attributes=many(attrs, 75), events=many(event, 75), purchases=many(purchase, 75)
        ).status_code
        == 201
    )
    assert_too_many(api.track(attributes=many(attrs, 76)))


def test_rule_mau_mode_is_50_combined(make_api):
    """Rule: some MAU contracts allow 50 objects combined."""
    api = make_api(mode="combined50")
    assert api.track(attributes=many(attrs, 20), events=many(event, 30)).status_code == 201
    assert_too_many(api.track(attributes=many(attrs, 20), events=many(event, 31)))


def test_rule_object_limit_can_change_at_run_time(api):
    """Rule: limits moved under running loaders (75 per array -> 75 combined); the sandbox can switch."""
    api.handle.configure(mode="per_array75")
    assert api.track(attributes=many(attrs, 50), events=many(event, 50)).status_code == 201
    api.handle.configure(mode="combined75")
    assert_too_many(api.track(attributes=many(attrs, 50), events=many(event, 50)))
