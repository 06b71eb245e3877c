"""data/samples/shop: exactly what generate.py writes, and its two nights through the CLI and the sandbox:
orders as eCommerce events (one per order, the invalid one rejected), a refund on night 2, and the product
catalog holding night 2's items after the second night (one edited, one created, one deleted)."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import API_KEY

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"


def _generator():
    spec = importlib.util.spec_from_file_location("samples_generate_shop", SAMPLES / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shop_samples_are_what_the_generator_writes(tmp_path):
    _generator().write_shop(tmp_path)
    committed = sorted(p.relative_to(SAMPLES).as_posix() for p in (SAMPLES / "shop").rglob("*") if p.is_file())
    fresh = sorted(p.relative_to(tmp_path).as_posix() for p in (tmp_path / "shop").rglob("*") if p.is_file())
    assert committed == fresh
    for name in committed:
        assert (SAMPLES / name).read_bytes() == (tmp_path / name).read_bytes(), name


def test_two_nights_of_the_shop_sample_through_the_sandbox(sandbox, tmp_path):
    fields = [{"name": "id", "type": "string"}, {"name": "title", "type": "string"},
              {"name": "price", "type": "number"}, {"name": "in_stock", "type": "boolean"},
              {"name": "released", "type": "time"}]
    auth = {"Authorization": f"Bearer {API_KEY}"}
    assert httpx.post(f"{sandbox.url}/catalogs", headers=auth,
                      json={"catalogs": [{"name": "products", "fields": fields}]}).status_code == 201
    env = {**os.environ, "BRAZE_REST_ENDPOINT": sandbox.url, "BRAZE_API_KEY": API_KEY,
           "PREFECT_HOME": str(tmp_path / "prefect"), "BRAZE_MIGRATE_PURCHASES_AS": "ecommerce"}
    state = tmp_path / "state"
    for night, kind in ((1, "backfill"), (2, "sync")):
        r = subprocess.run([sys.executable, "-m", "braze_migrate.cli.main", kind,
                            str(SAMPLES / "shop" / f"night{night}"), "--state", str(state), "--no-prefect", "--json",
                            "--catalog-deletes"], capture_output=True, text=True, env=env, timeout=300, check=False)
        assert r.returncode == 0, r.stderr[-2000:]
        summary = json.loads(r.stdout)
    frames = _generator().shop_frames(2)
    orders = frames["purchases"]
    placed = [e for p in sandbox.profiles().values() for e in p["events"] if e["name"] == "ecommerce.order_placed"]
    assert sorted(e["properties"]["order_id"] for e in placed) == sorted(set(orders["order_id"]) - {"ord-008"})
    one = next(e["properties"] for e in placed if e["properties"]["order_id"] == "ord-001")
    lines = orders.filter(orders["order_id"] == "ord-001")
    assert [p["product_id"] for p in one["products"]] == lines["product_id"].to_list()
    assert one["cart_id"] == "cart-001" and one["tax"] == lines["tax"][0]
    refunds = [e for p in sandbox.profiles().values() for e in p["events"] if e["name"] == "ecommerce.order_refunded"]
    assert [e["properties"]["order_id"] for e in refunds] == ["ord-001"]
    with open(summary["rejects_file"]) as fh:
        rejected = [(row["key"], row["reason"]) for row in csv.DictReader(fh)]
    assert rejected == [("ord-008", "order of 3 line(s) not sent: row 17: price is negative")]
    items = httpx.get(f"{sandbox.url}/_sandbox/catalogs").json()["catalogs"]["products"]["items"]
    assert sorted(items) == sorted(frames["catalogs/products"]["id"])
    assert items["sku-003"]["title"] == "Product 003 (new edition)"
    (c,) = summary["catalogs"]
    assert (c["created"], c["updated"], c["deleted"]) == (1, 1, 1)
