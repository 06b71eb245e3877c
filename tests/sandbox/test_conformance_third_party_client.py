"""Conformance: a third-party Braze client from PyPI works unchanged but for its base URL."""

from __future__ import annotations

from braze.client import BrazeClient

from tests.sandbox.helpers import KEY


def test_rule_pypi_braze_client_track_then_export(api):
    """Rule: `braze-client` (braze.client.BrazeClient) can user_track attributes, events and purchases,
    then user_export them, against the sandbox."""
    client = BrazeClient(api_key=KEY, api_url=api.handle.url)
    tracked = client.user_track(
        attributes=[
            {"external_id": "client-1", "first_name": "Ada", "email": "ada@example.com", "plan": "gold"}
        ],
        events=[{"external_id": "client-1", "name": "signed_up", "time": "2024-05-01T12:00:00Z"}],
        purchases=[
            {
                "external_id": "client-1",
                "product_id": "sku-1",
                "currency": "EUR",
                "price": 12.5,
                "time": "2024-05-01T12:00:00Z",
            }
        ],
    )
    assert tracked["success"] is True and tracked["status_code"] == 201
    assert (tracked["attributes_processed"], tracked["events_processed"], tracked["purchases_processed"]) == (
        1,
        1,
        1,
    )

    exported = client.user_export(
        external_ids=["client-1", "unknown"],
        fields_to_export=["first_name", "email", "custom_attributes", "custom_events", "purchases"],
    )
    assert exported["success"] is True and exported["invalid_user_ids"] == ["unknown"]
    (user,) = exported["users"]
    assert user["first_name"] == "Ada" and user["custom_attributes"] == {"plan": "gold"}
    assert user["custom_events"][0]["name"] == "signed_up" and user["purchases"][0]["count"] == 1


def test_rule_pypi_braze_client_sees_per_object_errors(api):
    """Rule: the client sees a 201 with `errors` as not fully successful, as Braze documents."""
    client = BrazeClient(api_key=KEY, api_url=api.handle.url)
    tracked = client.user_track(attributes=[{"external_id": "c1", "email": "nope"}, {"external_id": "c2"}])
    assert tracked["success"] is False
    assert tracked["errors"] == [{"type": "EMAIL_BAD_FORMAT", "input_array": "attributes", "index": 0}]
