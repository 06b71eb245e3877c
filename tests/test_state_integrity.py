"""Issue 13 point 4: a damaged state folder is found before anything is sent, and `repair` rebuilds the
snapshot from the ledger and the committed plans without resending what Braze acknowledged."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from braze_migrate.ops.repair import RepairImpossible, repair_state
from connectors.state.integrity import StateDamaged, check_state, require_intact
from connectors.state.ledger import Ledger

BIN = Path(sys.executable).parent / "braze-migrate"
SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"


def cli(*args):
    return subprocess.run([str(BIN), *map(str, args)], env=os.environ, capture_output=True, text=True,
                          timeout=300, check=False)


@pytest.fixture(scope="module")
def two_nights(tmp_path_factory, sandbox_server):
    """A state folder after backfill day1 and sync day2 against the sandbox (built once, copied per test)."""
    from tests.conftest import API_KEY

    sandbox_server.reset()
    root = tmp_path_factory.mktemp("integrity")
    state = root / "state"
    env = {"BRAZE_REST_ENDPOINT": sandbox_server.url, "BRAZE_API_KEY": API_KEY}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        for kind, day in (("backfill", "day1"), ("sync", "day2")):
            done = cli(kind, SAMPLES / day, "--state", state, "--no-prefect", "--json")
            assert done.returncode == 0, done.stderr[-2000:]
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return state


@pytest.fixture
def state(two_nights, tmp_path):
    copy = tmp_path / "state"
    shutil.copytree(two_nights, copy)
    return copy


def occurrences(profiles: dict) -> int:
    """Events and purchases Braze stores, over all profiles: a resend would add to it."""
    return sum(len(p.get("events") or ()) + len(p.get("purchases") or ()) for p in profiles.values())


def tables(state: Path) -> dict[str, list]:
    snap = state / "snapshot"
    out = {name: pl.read_parquet(snap / f"{name}.parquet").sort(pl.all()).rows()
           for name in ("purchases", "events", "push_tokens") if (snap / f"{name}.parquet").exists()}
    users = sorted((snap / "users").glob("*.parquet"))
    out["users"] = pl.concat([pl.read_parquet(f) for f in users], how="diagonal_relaxed").sort("external_id").rows()
    return out


def problems(state: Path) -> list[str]:
    led = Ledger(state / "ledger.sqlite")
    try:
        return check_state(state, led)
    finally:
        led.close()


def test_an_intact_state_has_no_problem(state):
    assert problems(state) == []


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda s: (s / "snapshot" / "events.parquet").unlink(), "snapshot/events.parquet is missing"),
        (lambda s: shutil.rmtree(s / "snapshot"), "is missing"),
        (lambda s: [f.unlink() for f in (s / "snapshot" / "users").glob("*.parquet")], "users/part-00000.parquet is missing"),
        (lambda s: (s / "snapshot" / "meta.json").write_text("{garbage"), "snapshot/meta.json"),
        (lambda s: (s / "snapshot" / "purchases.parquet").write_bytes(
            (s / "snapshot" / "purchases.parquet").read_bytes()[:100]), "purchases.parquet is not a readable"),
        (lambda s: pl.read_parquet(s / "snapshot" / "events.parquet").head(10).write_parquet(
            s / "snapshot" / "events.parquet"), "has 10 rows where the ledger recorded"),
    ],
)
def test_damage_is_named_in_one_line_with_the_way_back(state, damage, expected):
    damage(state)
    found = problems(state)
    assert any(expected in p for p in found), found
    led = Ledger(state / "ledger.sqlite")
    with pytest.raises(StateDamaged) as caught:
        require_intact(state, led)
    led.close()
    text = str(caught.value)
    assert "\n" not in text and "braze-migrate repair" in text and "export it again" not in text


def test_a_lost_ledger_with_a_planned_run_is_found(state):
    (state / "ledger.sqlite").unlink()
    for extra in state.glob("ledger.sqlite-*"):
        extra.unlink()
    found = problems(state)
    assert any("has a plan the ledger does not know" in p for p in found), found


def test_repair_rebuilds_exactly_what_the_commits_left(state):
    before = tables(state)
    (state / "snapshot" / "events.parquet").unlink()
    shutil.rmtree(state / "snapshot" / "users")
    (state / "snapshot" / "meta.json").write_text("nonsense")
    led = Ledger(state / "ledger.sqlite")
    try:
        report = repair_state(state, led)
        assert len(report.runs) == 2 and report.kept_aside and Path(report.kept_aside).exists()
        assert check_state(state, led) == []
    finally:
        led.close()
    assert tables(state) == before
    assert json.loads((state / "snapshot" / "meta.json").read_text())["partitions"] >= 1


def test_repair_refuses_when_a_committed_plan_is_gone(state):
    (state / "snapshot" / "events.parquet").unlink()
    for plan in (state / "runs").glob("*/plan"):
        shutil.rmtree(plan)
    led = Ledger(state / "ledger.sqlite")
    try:
        with pytest.raises(RepairImpossible, match="restore the state folder from a backup"):
            repair_state(state, led)
    finally:
        led.close()


def test_after_repair_a_sync_resends_nothing_acknowledged(state, sandbox_server, monkeypatch):
    from tests.conftest import API_KEY

    monkeypatch.setenv("BRAZE_REST_ENDPOINT", sandbox_server.url)
    monkeypatch.setenv("BRAZE_API_KEY", API_KEY)
    stored = occurrences(sandbox_server.profiles())
    assert stored > 0
    (state / "snapshot" / "events.parquet").unlink()
    led = Ledger(state / "ledger.sqlite")
    repair_state(state, led)
    led.close()
    done = cli("sync", SAMPLES / "day2", "--state", state, "--no-prefect", "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["datasets"]["events"]["acknowledged"] == 0
    assert occurrences(sandbox_server.profiles()) == stored


def test_repair_keeps_users_deleted_on_behalf_of_user_deletes_out(state):
    led = Ledger(state / "ledger.sqlite")
    try:
        run_id = led.runs(limit=1)[0].run_id
        led.record_deleted(run_id, ["000001"], at=0.0, committed=True)
        shutil.rmtree(state / "snapshot" / "users")
        repair_state(state, led)
    finally:
        led.close()
    users = pl.read_parquet(state / "snapshot" / "users" / "*.parquet")
    assert "000001" not in users["external_id"].to_list() and users.height > 100
    held = pl.read_parquet(state / "snapshot" / "held.parquet")
    assert held.filter(pl.col("dataset") == "user_deletes")["key"].to_list() == ["000001"]


@pytest.fixture
def pg_ledger(pg_server):
    """A PostgreSQL ledger in a schema of its own, dropped afterwards."""
    import uuid

    import psycopg

    from connectors.state.ledger_pg import PgLedger

    schema = f"bm_integrity_{uuid.uuid4().hex[:10]}"
    led = PgLedger(f"{pg_server}?schema={schema}")
    yield led
    led.close()
    with psycopg.connect(pg_server, autocommit=True) as con:
        con.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_the_record_and_the_check_work_on_a_postgresql_ledger(pg_ledger, tmp_path):
    from connectors.state.integrity import journal_for
    from connectors.state.snapshot import Snapshot

    state = tmp_path / "state"
    snapshot = Snapshot(state, journal=journal_for(state, pg_ledger, "r1"))
    snapshot.replace("events", pl.DataFrame({"key": ["e1", "e2"], "fingerprint": [1, 2]},
                                            schema={"key": pl.Utf8, "fingerprint": pl.UInt64}))
    assert check_state(state, pg_ledger) == []
    pl.DataFrame({"key": ["e1"], "fingerprint": [1]}, schema={"key": pl.Utf8, "fingerprint": pl.UInt64}
                 ).write_parquet(state / "snapshot" / "events.parquet")
    assert check_state(state, pg_ledger) == ["snapshot/events.parquet has 1 rows where the ledger recorded 2"]


def test_garbage_meta_json_without_a_record_is_named_not_a_traceback(tmp_path):
    from connectors.state.snapshot import Snapshot

    snapshot = Snapshot(tmp_path)  # a state folder older than the record: nothing to compare with
    (snapshot.root / "meta.json").write_text('{"partitions": "many"}')
    with pytest.raises(StateDamaged, match="meta.json is not a record of the users partition count"):
        snapshot.partitions(default=1)
