"""Purchases as eCommerce events, end to end against the sandbox over HTTP: multi-line orders become one
`ecommerce.order_placed` each whose products and totals equal the export; a repeat sends nothing; orders
that break Braze's schema are rejected with a reason and never sent; refunds and cancellations follow."""

from __future__ import annotations

import csv

import polars as pl

from braze_migrate.settings import load_settings
from tests.test_backfill import run as run_engine

T = "2024-05-01T12:00:00Z"
LINES = [  # order_id, external_id, product_id, product_name, variant_id, quantity, price, currency
    ("o1", "u1", "sku-1", "Trail shoe", "sku-1-42", 1, 89.99, "USD"),
    ("o1", "u1", "sku-2", "Socks", "sku-2-m", 3, 4.5, "USD"),
    ("o1", "u1", "sku-3", "Laces", "sku-3", 2, 1.25, "USD"),
    ("o2", "u2", "sku-1", "Trail shoe", "sku-1-40", 1, 89.99, "EUR"),
    ("o3", "u3", "sku-9", "Gift card", "sku-9", 1, -5.0, "USD"),  # negative price: the order is rejected
    ("o4", "u4", "sku-1", "Trail shoe", "sku-1-40", 1, 89.99, "USD"),
    ("o4", "u4", "sku-2", "Socks", "sku-2-m", 1, 4.5, "GBP"),  # two currencies in one order: rejected
]


def export(folder, lines=LINES, **extra):
    folder.mkdir(parents=True, exist_ok=True)
    cols = ("order_id", "external_id", "product_id", "product_name", "variant_id", "quantity", "price", "currency")
    frame = pl.DataFrame([dict(zip(cols, line)) for line in lines]).with_columns(time=pl.lit(T))
    frame.write_csv(folder / "purchases.csv")
    for name, rows in extra.items():
        pl.DataFrame(rows).write_csv(folder / f"{name}.csv")
    return folder


def run(kind, source, state, url, **opts):
    return run_engine(kind, source, state, url, purchases_as="ecommerce", **opts)


def events_of(sandbox, external_id):
    return [(e["name"], e["properties"]) for e in (sandbox.profile(external_id) or {"events": []})["events"]]


def test_multi_line_orders_load_as_one_order_placed_each_and_a_repeat_sends_nothing(sandbox, tmp_path):
    src, state = export(tmp_path / "d1"), tmp_path / "state"
    summary = run("backfill", src, state, sandbox.url)
    assert summary["status"] == "completed", summary
    assert summary["datasets"]["orders"] == {"read": 4, "acknowledged": 2, "rejected": 2, "unchanged": 0,
                                             "pending": 0, "rejected_cells": 0}
    ((name, props),) = events_of(sandbox, "u1")
    assert name == "ecommerce.order_placed"
    assert props["order_id"] == "o1" and props["currency"] == "USD" and props["source"] == "warehouse"
    assert props["total_value"] == round(89.99 + 3 * 4.5 + 2 * 1.25, 6)
    assert [(p["product_id"], p["product_name"], p["variant_id"], p["quantity"], p["price"])
            for p in props["products"]] == [line[2:7] for line in LINES[:3]]
    assert events_of(sandbox, "u2")[0][1]["total_value"] == 89.99
    assert sandbox.profile("u3") is None and sandbox.profile("u4") is None
    assert sandbox.profile("u1")["purchases"] == []  # eCommerce events instead of purchase objects
    with open(summary["rejects_file"]) as fh:
        reasons = {r["key"]: r["reason"] for r in csv.DictReader(fh)}
    assert reasons == {"o3": "order of 1 line(s) not sent: row 5: price is negative",
                       "o4": "rows of this order disagree on currency: one order has one user, currency and time"}

    again = run("sync", src, state, sandbox.url, skip_unchanged=False)  # planned again: the deltas themselves
    assert again["requests"] == 0 and again["datasets"]["orders"]["unchanged"] == 2
    assert len(events_of(sandbox, "u1")) == 1


def test_refunds_and_cancellations_and_order_level_columns(sandbox, tmp_path):
    lines = [("o1", "u1", "sku-1", "Trail shoe", "sku-1-42", 1, 89.99, "USD")]
    src = export(tmp_path / "d1", lines,
                 order_refunds=[{"order_id": "o1", "refund_id": "r1", "external_id": "u1", "product_id": "sku-1",
                                 "product_name": "Trail shoe", "variant_id": "sku-1-42", "price": 89.99,
                                 "currency": "USD", "time": T, "total_value": 89.99, "source": "pos"}],
                 order_cancellations=[{"order_id": "o9", "external_id": "u1", "product_id": "sku-2",
                                       "product_name": "Socks", "variant_id": "sku-2-m", "price": 4.5,
                                       "currency": "USD", "time": T, "cancel_reason": "customer_request"}])
    summary = run("backfill", src, tmp_path / "state", sandbox.url, order_source="web")
    assert summary["status"] == "completed" and summary["rejects"] == 0, summary
    got = {name: props for name, props in events_of(sandbox, "u1")}
    assert set(got) == {"ecommerce.order_placed", "ecommerce.order_refunded", "ecommerce.order_cancelled"}
    assert got["ecommerce.order_placed"]["source"] == "web"
    assert got["ecommerce.order_refunded"]["source"] == "pos" and got["ecommerce.order_refunded"]["order_id"] == "o1"
    assert got["ecommerce.order_cancelled"]["cancel_reason"] == "customer_request"


def test_plan_shows_orders_requests_and_data_points(tmp_path):
    from braze_migrate.reporting.terminal import render_plan as render_text
    from braze_migrate.run.dryrun import dry_run

    result = dry_run(load_settings(state=tmp_path / "state", purchases_as="ecommerce"), str(export(tmp_path / "d1")))
    orders = result["datasets"]["orders"]
    # o1 and o2: each event is one data point plus its top-level properties (order_id, total_value, currency,
    # products, source); o3 and o4 are rejected.
    assert (orders["read"], orders["to_send"], orders["data_points"], orders["rejected_rows"]) == (4, 2, 12, 2)
    assert result["requests"] == 1 and "orders" in render_text(result)


def test_order_lines_without_the_option_say_which_option_reads_them(tmp_path):
    from braze_migrate.run.dryrun import dry_run
    from transforms.normalize import NormalizeError

    try:
        dry_run(load_settings(state=tmp_path / "state"), str(export(tmp_path / "d1")))
    except NormalizeError as exc:
        assert "required column 'purchase_id' is missing" in str(exc) and "--purchases-as ecommerce" in str(exc)
    else:
        raise AssertionError("order lines planned as purchase objects must fail in one line")


def test_a_mapping_file_maps_warehouse_columns_onto_the_order_columns(tmp_path):
    from connectors.mapping import MappingError
    from connectors.sources import open_source

    src = tmp_path / "wh"
    src.mkdir()
    cols = {"ORDER_NO": "order_id", "CUSTOMER": "external_id", "SKU": "product_id", "TITLE": "product_name",
            "VARIANT": "variant_id", "QTY": "quantity", "UNIT_PRICE": "price", "CCY": "currency"}
    frame = pl.DataFrame([dict(zip(cols, line)) for line in LINES[:3]]).with_columns(ORDERED_AT=pl.lit(T))
    frame.write_csv(src / "purchases.csv")
    mapping = tmp_path / "m.yaml"
    columns = "\n".join(f"      {target}: {column}" for column, target in {**cols, "ORDERED_AT": "time"}.items())
    mapping.write_text(f"datasets:\n  purchases:\n    columns:\n{columns}\n")
    data = open_source(src, mapping=mapping, work_dir=tmp_path / "w")
    assert {"order_id", "product_name", "variant_id", "price", "time"} <= set(data["purchases"].frame.collect_schema())
    mapping.write_text(f"datasets:\n  purchases:\n    columns:\n{columns}\n      varient_id: VARIANT\n")
    try:
        open_source(src, mapping=mapping, work_dir=tmp_path / "w")
    except MappingError as exc:
        assert "'varient_id' is not a column of purchases; did you mean 'variant_id'?" in str(exc)
    else:
        raise AssertionError("a misspelt order column must fail in one line")
