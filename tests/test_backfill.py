"""End to end through the engine against the sandbox over real HTTP: backfill, re-run, nightly sync."""

from __future__ import annotations

import csv
import time
from datetime import UTC, datetime

import pytest

from braze_migrate.run.engine import Engine
from braze_migrate.settings import load_settings
from tests.conftest import API_KEY
from tests.exports import DAY1_EVENTS, DAY1_PURCHASES, DAY1_TOKENS, DAY1_USERS, T0, write_export


def run(kind, source, state, url, **opts):
    engine = Engine(load_settings(state=state, **opts))
    try:
        prepared = engine.prepare(kind, str(source))
        engine.apply(prepared, url, API_KEY)
        return engine.finish(prepared, started=time.monotonic())
    finally:
        engine.close()


def known_profiles(sandbox):
    return {k: v for k, v in sandbox.profiles().items() if v.get("external_id")}


@pytest.mark.parametrize("fmt,per_partition", [("parquet", 500_000), ("csv", 500_000), ("ndjson", 500_000),
                                               ("parquet", 1), ("csv", 2)])
def test_backfill_loads_exactly_the_expected_state(fmt, per_partition, sandbox, tmp_path):
    src = write_export(tmp_path / "export", fmt)
    summary = run("backfill", src, tmp_path / "state", sandbox.url, users_per_partition=per_partition)
    assert summary["status"] == "completed"

    profiles = known_profiles(sandbox)
    assert set(profiles) == {"000123", "u2", "u3"}
    ann = profiles["000123"]
    assert ann["email"] == "ann@example.com" and ann["first_name"] == "Ann" and ann["country"] == "NO"
    assert ann["dob"] == "1990-05-01"
    assert ann["custom_attributes"] == {"zip": "0150", "vip": True, "score": 12, "balance": 3.5, "city": "Oslo"}
    assert [(p["product_id"], p["currency"], p["price"], p.get("quantity")) for p in ann["purchases"]] == [
        ("sku-1", "USD", 9.99, 2)]
    assert [e["name"] for e in ann["events"]] == ["login"]
    assert [t["token"] for t in ann["push_tokens"]] == ["a" * 64]

    bob = profiles["u2"]
    assert "email" not in bob or bob["email"] is None  # malformed: that field only is dropped
    assert bob["first_name"] == "Bob" and bob["custom_attributes"]["score"] == 7
    assert bob["purchases"] == [] and bob["events"] == [] and bob["push_tokens"] == []

    cy = profiles["u3"]
    assert cy["first_name"] == "Cy" and cy["custom_attributes"]["zip"] == "3001"  # latest updated_at wins
    anonymous = [p for p in sandbox.profiles().values() if not p.get("external_id")]
    assert [t["token"] for p in anonymous for t in p["push_tokens"]] == ["anon-token-" + "b" * 40]

    d = summary["datasets"]
    assert d["users"] == {"read": 5, "acknowledged": 3, "rejected": 2, "unchanged": 0, "pending": 0,
                          "rejected_cells": 1}
    assert (d["purchases"]["acknowledged"], d["purchases"]["rejected"]) == (2, 2)
    assert (d["events"]["acknowledged"], d["events"]["rejected"]) == (2, 1)
    assert (d["push_tokens"]["acknowledged"], d["push_tokens"]["rejected"]) == (2, 1)
    for b in d.values():
        assert b["acknowledged"] + b["rejected"] + b["unchanged"] + b["pending"] == b["read"]


def test_rejects_file_names_every_rejected_row_and_cell_with_a_reason(sandbox, tmp_path):
    src = write_export(tmp_path / "export", "csv")
    summary = run("backfill", src, tmp_path / "state", sandbox.url)
    with open(summary["rejects_file"], newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert all(r["reason"] for r in rows)
    found = {(r["dataset"], r["key"], r["column"]) for r in rows}
    assert ("users", "u2", "email") in found
    assert ("purchases", "p2", "") in found and ("purchases", "p1", "") in found
    assert ("events", "e2", "") in found
    assert any(r["dataset"] == "push_tokens" for r in rows)
    assert not any("not-an-email" in v for r in rows for v in r.values())  # personal data stays out
    rejected = sum(b["rejected"] + b["rejected_cells"] for b in summary["datasets"].values())
    assert len(rows) == rejected


def test_running_the_same_backfill_again_sends_nothing(sandbox, tmp_path):
    src = write_export(tmp_path / "export", "parquet")
    run("backfill", src, tmp_path / "state", sandbox.url)
    before = sandbox.stats()["requests"]
    again = run("backfill", src, tmp_path / "state", sandbox.url)
    assert again["requests"] == 0 and sandbox.stats()["requests"] == before
    assert again["datasets"]["users"]["unchanged"] == 3
    assert again["datasets"]["purchases"]["unchanged"] == 2


def test_requests_stay_within_the_object_limit(sandbox, tmp_path):
    users = [{**DAY1_USERS[0], "external_id": f"user-{i:04d}"} for i in range(400)]
    src = write_export(tmp_path / "export", "parquet", users=users, purchases=[], events=[], tokens=[])
    summary = run("backfill", src, tmp_path / "state", sandbox.url, batch_size=50)
    assert summary["requests"] == 8 and summary["datasets"]["users"]["acknowledged"] == 400
    assert sandbox.stats().get("throttled", 0) == 0


@pytest.mark.parametrize("per_partition", [500_000, 2])
def test_sync_sends_only_changes_unsets_new_users_and_new_purchases(per_partition, sandbox, tmp_path):
    state = tmp_path / "state"
    run("backfill", write_export(tmp_path / "day1", "parquet"), state, sandbox.url, users_per_partition=per_partition)
    dp_before = sandbox.stats()["data_points"]

    users = [dict(u) for u in DAY1_USERS]
    users[0]["city"] = "Bergen"  # changed: 1 point
    users[1]["score"] = None  # became empty: null, 1 point
    users.append({**DAY1_USERS[0], "external_id": "u4", "email": "dee@example.com", "first_name": "Dee",
                  "updated_at": T0})  # new user: email, first_name, country, dob, zip, vip, score, balance, city
    purchases = DAY1_PURCHASES + [{"purchase_id": "p4", "external_id": "u4", "product_id": "sku-4",
                                   "currency": "EUR", "price": 2.0, "time": datetime(2026, 11, 3, tzinfo=UTC),
                                   "quantity": 1, "properties": None}]
    day2 = write_export(tmp_path / "day2", "parquet", users=users, purchases=purchases, events=DAY1_EVENTS,
                        tokens=DAY1_TOKENS)
    summary = run("sync", day2, state, sandbox.url, users_per_partition=per_partition)
    assert summary["status"] == "completed"
    profiles = known_profiles(sandbox)
    assert profiles["000123"]["custom_attributes"]["city"] == "Bergen"
    assert "score" not in profiles["u2"]["custom_attributes"]
    assert profiles["u4"]["first_name"] == "Dee"
    assert [p["product_id"] for p in profiles["000123"]["purchases"]] == ["sku-1"]  # not sent twice
    assert [p["product_id"] for p in profiles["u4"]["purchases"]] == ["sku-4"]
    minimum = 1 + 1 + 9 + 1
    assert summary["data_points"]["sent"] == minimum
    assert sandbox.stats()["data_points"] - dp_before == minimum

    again = run("sync", day2, state, sandbox.url, users_per_partition=per_partition)
    assert again["requests"] == 0


def test_users_streamed_in_several_batches_give_the_same_result(sandbox, tmp_path, monkeypatch):
    from braze_migrate.plan import planner

    # 5 user rows read 2 at a time and written out at every batch: duplicates across batches and row groups
    monkeypatch.setattr(planner, "BATCH_ROWS", 2)
    monkeypatch.setattr(planner, "SPOOL_ROWS", 2)
    src = write_export(tmp_path / "export", "csv")
    summary = run("backfill", src, tmp_path / "state", sandbox.url, users_per_partition=2)
    assert summary["status"] == "completed"
    assert summary["datasets"]["users"] == {"read": 5, "acknowledged": 3, "rejected": 2, "unchanged": 0,
                                            "pending": 0, "rejected_cells": 1}
    assert known_profiles(sandbox)["u3"]["custom_attributes"]["zip"] == "3001"  # latest updated_at still wins
