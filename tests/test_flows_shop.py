"""The backfill flow with Prefect's real engine on the shop sample: orders go as eCommerce events and the
catalog is synced by the flow's `catalogs` task, after the commit."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from prefect.settings import PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
from prefect.testing.utilities import prefect_test_harness

from tests.conftest import API_KEY

SHOP = Path(__file__).resolve().parents[1] / "data" / "samples" / "shop"
FIELDS = [{"name": "id", "type": "string"}, {"name": "title", "type": "string"}, {"name": "price", "type": "number"},
          {"name": "in_stock", "type": "boolean"}, {"name": "released", "type": "time"}]

pytestmark = pytest.mark.timeout(300)


def test_backfill_flow_sends_orders_as_events_and_syncs_the_catalog(braze_env, tmp_path, monkeypatch):
    from flows.load import backfill

    sandbox = braze_env
    assert httpx.post(f"{sandbox.url}/catalogs", headers={"Authorization": f"Bearer {API_KEY}"},
                      json={"catalogs": [{"name": "products", "fields": FIELDS}]}).status_code == 201
    monkeypatch.setenv("PREFECT_LOGGING_LEVEL", "WARNING")
    with prefect_test_harness(server_startup_timeout=120), temporary_settings(
            updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}, restore_defaults={PREFECT_API_URL}):
        final = backfill(source=str(SHOP / "night1"), state=str(tmp_path / "state"), ecommerce={"purchases_as": "ecommerce"},
                         return_state=True)
    assert final.is_completed(), final.message
    summary = final.result().to_json()
    assert summary["datasets"]["orders"]["acknowledged"] == 7 and summary["datasets"]["orders"]["rejected"] == 1
    (catalog,) = summary["catalogs"]
    assert (catalog["name"], catalog["created"], catalog["batches"]) == ("products", 20, 1)
    items = httpx.get(f"{sandbox.url}/_sandbox/catalogs").json()["catalogs"]["products"]["items"]
    assert len(items) == 20 and items["sku-001"]["title"] == "Product 001"
