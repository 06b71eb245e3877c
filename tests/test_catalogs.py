"""Catalog sync against the sandbox over HTTP: two nights of a 10,000-item catalog send exactly the changes
(deletes only with --catalog-deletes, and guarded), a kill -9 mid-sync resends nothing acknowledged, a field
that differs from Braze's catalog stops the sync in one line with nothing sent, and `plan` shows the requests."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid

import httpx
import polars as pl
import psycopg
import pytest

from braze_migrate.run import stages
from braze_migrate.settings import load_settings
from tests.conftest import API_KEY

FIELDS = [{"name": "id", "type": "string"}, {"name": "title", "type": "string"}, {"name": "price", "type": "number"},
          {"name": "in_stock", "type": "boolean"}]
N = 10_000


def catalog_night(n_items: int = N, night: int = 1) -> pl.DataFrame:
    """Night 1: items 0..N-1. Night 2: 1% changed (price), 0.5% new, 0.5% gone."""
    ids = list(range(n_items))
    frame = pl.DataFrame({"id": [f"item-{i:05d}" for i in ids], "title": [f"Item {i}" for i in ids],
                          "price": [float(i % 97) for i in ids], "in_stock": [i % 3 != 0 for i in ids]})
    if night == 2:
        frame = frame.with_columns(price=pl.when(pl.int_range(pl.len()) % 100 == 1).then(pl.col("price") + 0.5)
                                   .otherwise(pl.col("price")))
        frame = frame.filter(pl.int_range(pl.len()) % 200 != 7)  # 0.5% gone
        new = pl.DataFrame({"id": [f"new-{i:04d}" for i in range(n_items // 200)], "title": "New",
                            "price": 1.0, "in_stock": True})
        frame = pl.concat([frame, new])
    return frame


def export(folder, frame: pl.DataFrame):
    (folder / "catalogs").mkdir(parents=True, exist_ok=True)
    frame.write_parquet(folder / "catalogs" / "products.parquet")
    return folder


def create_catalog(sandbox, fields=FIELDS):
    r = httpx.post(f"{sandbox.url}/catalogs", headers={"Authorization": f"Bearer {API_KEY}"},
                   json={"catalogs": [{"name": "products", "description": "shop", "fields": fields}]})
    assert r.status_code == 201, r.text


def held(sandbox) -> dict:
    return httpx.get(f"{sandbox.url}/_sandbox/catalogs").json()


def run(kind, source, state, **opts):
    return stages.run_load(kind, str(source), None, load_settings(state=state, **opts))


def test_two_nights_send_exactly_the_changes(braze_env, tmp_path):
    sandbox, state = braze_env, tmp_path / "state"
    create_catalog(sandbox)
    night1 = catalog_night()
    s1 = run("backfill", export(tmp_path / "n1", night1), state)
    assert s1.status == "completed", s1.message
    (report,) = s1.catalogs
    assert (report["created"], report["updated"], report["deleted"], report["batches"]) == (N, 0, 0, N // 50)
    got = held(sandbox)
    assert got["requests"]["POST"] == N // 50 and got["items"]["POST"] == N
    assert got["catalogs"]["products"]["items"]["item-00043"] == {"id": "item-00043", "title": "Item 43",
                                                                  "price": 43.0, "in_stock": True}
    again = run("sync", tmp_path / "n1", state, skip_unchanged=False)  # planned again: nothing to send
    assert again.catalogs[0]["batches"] == 0 and held(sandbox)["requests"]["POST"] == N // 50

    night2 = catalog_night(night=2)
    s2 = run("sync", export(tmp_path / "n2", night2), state)
    (report,) = s2.catalogs
    assert (report["created"], report["updated"], report["deleted"], report["gone_kept"]) == (50, 100, 0, 50)
    got = held(sandbox)
    assert (got["items"]["POST"], got["items"]["PATCH"], got["items"]["DELETE"]) == (N + 50, 100, 0)
    assert got["requests"]["PATCH"] == 2 and got["requests"]["DELETE"] == 0
    assert len(got["catalogs"]["products"]["items"]) == N + 50  # the gone items are kept without the option

    s3 = run("sync", tmp_path / "n2", state, catalog_deletes=True)
    assert s3.catalogs[0]["deleted"] == 50 and s3.catalogs[0]["created"] == 0
    items = held(sandbox)["catalogs"]["products"]["items"]
    assert sorted(items) == sorted(night2["id"].to_list())
    assert {k: v for k, v in items["item-00001"].items()} == night2.filter(pl.col("id") == "item-00001").to_dicts()[0]
    assert held(sandbox)["items"]["PATCH"] == 100  # nothing sent twice


def test_mass_delete_is_held(braze_env, tmp_path):
    sandbox, state = braze_env, tmp_path / "state"
    create_catalog(sandbox)
    run("backfill", export(tmp_path / "n1", catalog_night(400)), state)
    s = run("sync", export(tmp_path / "n2", catalog_night(400).head(200)), state, catalog_deletes=True)
    assert s.status == "held" and "200 of 400 acknowledged items are gone" in s.message
    assert held(sandbox)["items"]["DELETE"] == 0
    s = run("sync", tmp_path / "n2", state, catalog_deletes=True, allow_mass_delete=True)
    assert s.status == "completed" and held(sandbox)["items"]["DELETE"] == 200


def test_a_field_that_differs_from_braze_stops_the_sync_in_one_line(sandbox, tmp_path):
    create_catalog(sandbox, [*FIELDS[:2], {"name": "price", "type": "string"}, FIELDS[3]])
    env = {**os.environ, "BRAZE_REST_ENDPOINT": sandbox.url, "BRAZE_API_KEY": API_KEY,
           "PREFECT_HOME": str(tmp_path / "prefect")}
    src = export(tmp_path / "n1", catalog_night(100))
    r = subprocess.run([sys.executable, "-m", "braze_migrate.cli.main", "backfill", str(src), "--state", str(tmp_path / "state"),
                        "--no-prefect"], capture_output=True, text=True, env=env, timeout=300, check=False)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    (line,) = [x for x in r.stderr.splitlines() if "catalog" in x]
    assert "field 'price' is number in the export but string in Braze" in line and "nothing sent" in line
    assert held(sandbox)["requests"]["POST"] == 0


def test_kill_9_mid_sync_resends_nothing_acknowledged(sandbox, tmp_path):
    create_catalog(sandbox)
    sandbox.set_faults(latency_ms=15)
    env = {**os.environ, "BRAZE_REST_ENDPOINT": sandbox.url, "BRAZE_API_KEY": API_KEY,
           "PREFECT_HOME": str(tmp_path / "prefect")}
    state, src = tmp_path / "state", export(tmp_path / "n1", catalog_night(5000))
    cmd = [sys.executable, "-m", "braze_migrate.cli.main", "backfill", str(src), "--state", str(state), "--no-prefect", "--json"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    acked = 0
    while time.monotonic() < deadline and acked < 20:
        time.sleep(0.05)
        try:
            with sqlite3.connect(state / "ledger.sqlite", timeout=1) as db:
                acked = db.execute("SELECT COUNT(*) FROM catalog_batches WHERE status='acknowledged'").fetchone()[0]
        except sqlite3.Error:
            acked = 0
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 20 <= acked < 100, acked
    sandbox.set_faults(latency_ms=0)
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    with sqlite3.connect(state / "ledger.sqlite") as db:
        rows = db.execute("SELECT status, attempts, committed FROM catalog_batches").fetchall()
    assert len(rows) == 100 and all(s == "acknowledged" and c == 1 for s, _, c in rows)
    assert sum(a for _, a, _ in rows) <= 101  # at most the one request in flight at the kill went twice
    got = held(sandbox)
    assert N // 2 <= got["items"]["POST"] <= N // 2 + 50
    assert len(got["catalogs"]["products"]["items"]) == N // 2
    second = json.loads(r.stdout)
    assert second["catalogs"] == [] or second["catalogs"][0]["batches"] == 0
    # The next night (1% changed, 0.5% new, 0.5% gone, with deletes) sends exactly those changes.
    night2 = catalog_night(N // 2, night=2)
    r = subprocess.run([*cmd[:3], "sync", str(export(tmp_path / "n2", night2)), *cmd[5:], "--catalog-deletes"],
                       capture_output=True, text=True, env=env, timeout=300, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    (report,) = json.loads(r.stdout)["catalogs"]
    assert (report["created"], report["updated"], report["deleted"]) == (25, 50, 25)
    after = held(sandbox)
    assert after["items"]["POST"] - got["items"]["POST"] == 25 and after["items"]["PATCH"] == 50
    assert after["items"]["DELETE"] == 25
    assert sorted(after["catalogs"]["products"]["items"]) == sorted(night2["id"].to_list())


def test_plan_shows_catalog_requests(tmp_path, monkeypatch):
    from braze_migrate.run.dryrun import dry_run

    src = export(tmp_path / "n1", catalog_night(120))
    result = dry_run(load_settings(state=tmp_path / "state"), str(src))
    (c,) = result["catalogs"]
    assert (c["name"], c["requests"], c["creates"], c["data_points"]) == ("products", 3, 120, 0)


def test_a_mapping_file_names_a_catalog_and_maps_its_id(tmp_path):
    from connectors.errors import SourceError
    from connectors.sources import catalog_names, open_source

    pl.DataFrame({"SKU": ["a-1", "b-2"], "title": ["A", "B"]}).write_csv(tmp_path / "skus.csv")
    (tmp_path / "m.yaml").write_text("catalogs:\n  products:\n    path: skus.csv\n    columns: {id: SKU}\n")
    assert catalog_names(tmp_path / "m.yaml") == ["catalogs/products"]
    frame = open_source(tmp_path / "m.yaml", work_dir=tmp_path / "w")["catalogs/products"].frame.collect()
    assert frame.select("id", "title").rows() == [("a-1", "A"), ("b-2", "B")]
    (tmp_path / "bad.yaml").write_text("catalogs:\n  products:\n    path: skus.csv\n    columns: {id: SKUU}\n")
    try:
        open_source(tmp_path / "bad.yaml", work_dir=tmp_path / "w")
    except SourceError as exc:
        assert "line 4 (catalogs.products.columns.id): column 'SKUU' is not in the export" in str(exc)
    else:
        raise AssertionError("a mapped column that does not exist must fail")


@pytest.fixture(params=["sqlite", "postgresql"])
def any_ledger(request, tmp_path):
    """A fresh ledger on each backend (PostgreSQL in a schema of its own, dropped after)."""
    from connectors.state.ledger import Ledger
    from connectors.state.ledger_pg import PgLedger

    if request.param == "sqlite":
        led = Ledger(tmp_path / "ledger.sqlite")
        yield led
        led.close()
        return
    server = request.getfixturevalue("pg_server")
    schema = f"bm_test_{uuid.uuid4().hex[:10]}"
    led = PgLedger(f"{server}?schema={schema}")
    yield led
    led.close()
    with psycopg.connect(server, autocommit=True) as con:
        con.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_catalog_ledger_operations_on_both_backends(any_ledger):
    from connectors.state.catalogs import CatalogLedger

    book = CatalogLedger(any_ledger)
    book.record_plan("r1", "products", [(0, "POST", 50), (1, "PATCH", 3)])
    book.record_plan("r1", "products", [(0, "POST", 50), (1, "PATCH", 3)])  # recorded again: idempotent
    book.mark_sending("r1", "products", 0)
    assert book.unfinished() == [("r1", "products")]
    book.record_result("r1", "products", 0, "acknowledged", requests=2, throttled=1, reason=None)
    book.mark_sending("r1", "products", 1)
    book.record_result("r1", "products", 1, "rejected", requests=1, throttled=0, reason="invalid-fields")
    assert book.unfinished() == [("r1", "products")]  # acknowledged, not yet in the snapshot
    book.mark_committed("r1", "products", [0])
    assert book.unfinished() == []
    (a, b) = book.batches("r1", "products")
    assert (a.status, a.requests, a.throttled, a.committed) == ("acknowledged", 2, 1, True)
    assert (b.status, b.reason, b.committed) == ("rejected", "invalid-fields", False)


def test_a_request_braze_refuses_is_named_and_planned_again(tmp_path, monkeypatch):
    from braze_sandbox import SandboxConfig, start_sandbox

    with start_sandbox(SandboxConfig(api_key=API_KEY, catalog_max_items=10)) as small:  # Braze's limit, lowered
        monkeypatch.setenv("BRAZE_REST_ENDPOINT", small.url)
        monkeypatch.setenv("BRAZE_API_KEY", API_KEY)
        create_catalog(small)
        s = run("backfill", export(tmp_path / "n1", catalog_night(60)), tmp_path / "state")
        (report,) = s.catalogs
        # 60 items: a request of 50 (refused: over the lowered limit) and one of 10 (created).
        assert (report["refused_batches"], report["created"], report["rejected"]) == (1, 10, 50)
        assert any("refused whole" in note and "products: 1" in note for note in s.notes)
        assert s.datasets["catalogs/products"].rejected == 50
        # Not acknowledged, so never lost: the next export plans those 50 again (the 10 acknowledged are unchanged).
        again = run("sync", export(tmp_path / "n2", catalog_night(61)), tmp_path / "state")
        assert (again.catalogs[0]["refused_batches"], again.catalogs[0]["unchanged"]) == (1, 10)
