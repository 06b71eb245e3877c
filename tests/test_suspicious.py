"""Issue 13 point 10: valid but suspicious rows are named in the rejects file and held unless told to send."""

from __future__ import annotations

import json
import os
from datetime import date
from pathlib import Path

import polars as pl

from tests.cli_run import run_cli
from tests.conftest import API_KEY
from transforms.suspicious import Rules, check_dob, check_occurrences


def export(folder: Path) -> Path:
    folder.mkdir(parents=True)
    pl.DataFrame({"external_id": ["u1", "u2"], "dob": [date(1990, 5, 1), date(1, 1, 1)]}).write_parquet(
        folder / "users.parquet")
    (folder / "purchases.csv").write_text(
        "purchase_id,external_id,product_id,currency,price,time\n"
        "p1,u1,sku,EUR,2.0,2026-11-01T10:00:00Z\n"
        "p1,u1,sku,EUR,999.0,2026-11-01T10:00:00Z\n"   # same id, different price
        "p2,u1,sku,EUR,5.0,2026-11-01T10:00:00Z\n"
        "p3,u1,sku,EUR,5.0,2026-11-01T10:00:00Z\n"
        "p3,u1,sku,EUR,5.0,2026-11-01T10:00:00Z\n")    # an exact repeat: a plain duplicate
    (folder / "events.ndjson").write_text(
        '{"event_id":"e1","external_id":"u1","name":"visit","time":"9999-12-31T00:00:00Z"}\n'
        '{"event_id":"e2","external_id":"u1","name":"visit","time":"2200-01-01T00:00:00Z"}\n'
        '{"event_id":"e3","external_id":"u1","name":"visit","time":"2026-11-01T00:00:00Z"}\n')
    return folder


run = run_cli


def test_suspicious_rows_are_held_by_default_and_named(sandbox, tmp_path):
    env = {**os.environ, "BRAZE_REST_ENDPOINT": sandbox.url, "BRAZE_API_KEY": API_KEY}
    done = run("backfill", export(tmp_path / "x"), "--state", tmp_path / "s", "--no-prefect", "--json", env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    rejects = pl.read_csv(summary["rejects_file"], infer_schema=False)
    why: dict[tuple, str] = {}
    for r in rejects.iter_rows(named=True):
        why[(r["key"], r["column"])] = why.get((r["key"], r["column"]), "") + " | " + r["reason"]
    assert "different contents" in why[("p1", None)] and "held" in why[("p1", None)]
    assert "year 9999" in why[("e1", None)] and "year 2200" in why[("e2", None)]
    assert "dob" in why[("u2", "dob")]
    assert not any("suspicious" in r for k, r in why.items() if k[0] in ("p2", "p3", "e3", "u1"))
    profile = sandbox.profile("u1")
    assert sorted(e["time"][:4] for e in profile["events"]) == ["2026"]
    assert sorted(p["price"] for p in profile["purchases"]) == [5.0, 5.0]  # p2, p3; p1 held
    assert "dob" not in (sandbox.profile("u2") or {})
    assert summary["datasets"]["events"]["rejected"] == 2 and summary["datasets"]["purchases"]["rejected"] >= 3
    assert summary["suspicious"] == 4 and any("4 suspicious" in n for n in summary["notes"])


def test_send_mode_sends_them_and_still_lists_them(sandbox, tmp_path):
    env = {**os.environ, "BRAZE_REST_ENDPOINT": sandbox.url, "BRAZE_API_KEY": API_KEY}
    done = run("backfill", export(tmp_path / "x"), "--state", tmp_path / "s", "--no-prefect", "--json",
               "--suspicious", "send", "--time-horizon-year", "2300", env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    reasons = pl.read_csv(summary["rejects_file"], infer_schema=False)["reason"].to_list()
    assert any("sent anyway" in r and "9999" in r for r in reasons)
    assert not any("2200" in r for r in reasons)  # inside the horizon of 2300
    assert len(sandbox.profile("u1")["events"]) == 3


def test_the_checks_are_pure_lazy_transforms():
    raw = pl.LazyFrame({"event_id": ["a", "a"], "name": ["x", "y"], "_file": ["f", "f"], "_row": [1, 2]})
    good = pl.LazyFrame({"event_id": ["a"], "external_id": ["u"], "_file": ["f"], "_row": [1],
                         "object": ['{"name":"x","time":"2026-01-01T00:00:00.000Z"}']})
    kept, rejects = check_occurrences("events", raw, good, Rules())
    assert isinstance(kept, pl.LazyFrame) and kept.collect().height == 0 and rejects.collect().height == 1
    users = pl.LazyFrame({"external_id": ["u"], "_file": ["f"], "_row": [1], "_dropped": [[]],
                          "dob": ['"2999-01-01"']})
    held, flagged = check_dob(users, Rules(today=date(2026, 12, 2)))
    assert flagged.collect()["column"].to_list() == ["dob"]
    assert held.collect()["dob"].to_list() == [None] and held.collect()["_dropped"].to_list() == [["dob"]]
