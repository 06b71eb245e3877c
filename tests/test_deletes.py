"""User deletes through the CLI against the sandbox over HTTP: exactly the listed users are deleted, the
guard holds a mass delete, a kill -9 mid-way resumes without deleting an acknowledged id twice."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

from tests.conftest import API_KEY

IDS = [f"u{i:03d}" for i in range(40)]


def _env(sandbox, tmp_path: Path, **extra: str) -> dict:
    return {**os.environ, "BRAZE_REST_ENDPOINT": sandbox.url, "BRAZE_API_KEY": API_KEY,
            "PREFECT_HOME": str(tmp_path / "prefect"), **extra}


def _cmd(kind: str, src: Path, state: Path, *flags: str) -> list[str]:
    return [sys.executable, "-m", "braze_migrate.cli.main", kind, str(src), "--state", str(state), "--no-prefect", "--json", *flags]


def _run(kind, src, state, env, *flags) -> tuple[int, dict]:
    r = subprocess.run(_cmd(kind, src, state, *flags), capture_output=True, text=True, env=env, timeout=300,
                       check=False)
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
    return r.returncode, json.loads(r.stdout)


def _export(folder: Path, ids: list[str], deletes: list[str] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    pl.DataFrame({"external_id": ids, "city": ["Oslo"] * len(ids)}).write_parquet(folder / "users.parquet")
    if deletes is not None:
        pl.DataFrame({"external_id": deletes, "reason": ["erasure"] * len(deletes)}).write_csv(
            folder / "user_deletes.csv")
    return folder


def _snapshot_ids(state: Path) -> set[str]:
    parts = sorted((state / "snapshot" / "users").glob("part-*.parquet"))
    return set(pl.concat([pl.read_parquet(p) for p in parts])["external_id"]) if parts else set()


def _known(sandbox) -> set[str]:
    return {p["external_id"] for p in sandbox.profiles().values() if p.get("external_id")}


def test_a_night_with_three_erasures_deletes_exactly_those_users(sandbox, tmp_path):
    env, state = _env(sandbox, tmp_path), tmp_path / "state"
    assert _run("backfill", _export(tmp_path / "d1", IDS), state, env)[0] == 0
    gone = ["u001", "u017", "u033"]
    code, summary = _run("sync", _export(tmp_path / "d2", IDS[:30], deletes=gone), state, env)
    assert code == 0 and summary["status"] == "completed"
    assert _known(sandbox) == set(IDS) - set(gone)  # absence from the export (u030..u039) never deletes
    assert sorted(summary["deletes"]["deleted_ids"]) == gone
    assert summary["datasets"]["user_deletes"]["acknowledged"] == 3
    assert _snapshot_ids(state) == set(IDS) - set(gone)
    assert sandbox.stats()["requests_by_endpoint"]["/users/delete"] == 1
    code, again = _run("sync", tmp_path / "d2", state, env, "--no-skip-unchanged")  # the deletes path itself
    assert code == 0 and again["deletes"]["requested"] == 0 and again["deletes"]["already_deleted"] == 3
    assert sandbox.stats()["requests_by_endpoint"]["/users/delete"] == 1


def test_deleting_30_percent_of_users_is_held_until_allowed(sandbox, tmp_path):
    ids = [f"u{i:03d}" for i in range(200)]
    env, state = _env(sandbox, tmp_path), tmp_path / "state"
    assert _run("backfill", _export(tmp_path / "d1", ids), state, env)[0] == 0
    code, summary = _run("sync", _export(tmp_path / "d2", ids, deletes=ids[:60]), state, env)
    assert code == 4 and summary["status"] == "held" and summary["deletes"]["held"]
    assert "--allow-mass-delete" in summary["resume_command"] and "30%" in summary["message"]
    assert _known(sandbox) == set(ids) and "/users/delete" not in sandbox.stats()["requests_by_endpoint"]
    code, summary = _run("sync", tmp_path / "d2", state, env, "--allow-mass-delete")
    assert code == 0 and sorted(summary["deletes"]["deleted_ids"]) == ids[:60]
    assert _known(sandbox) == set(ids[60:])


def test_kill_9_during_deletes_resumes_without_a_second_request_for_acknowledged_ids(sandbox, tmp_path):
    ids = [f"u{i:04d}" for i in range(150)]
    env = _env(sandbox, tmp_path, BRAZE_MIGRATE_DELETE_MAX_SHARE="1")
    state = tmp_path / "state"
    assert _run("backfill", _export(tmp_path / "d1", ids), state, env)[0] == 0
    src = _export(tmp_path / "d2", ids, deletes=ids[:150])  # 3 requests of 50
    sandbox.set_faults(latency_ms=1500)
    proc = subprocess.Popen(_cmd("sync", src, state), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ledger = state / "ledger.sqlite"
    deadline = time.monotonic() + 120
    acked = 0
    while time.monotonic() < deadline and acked == 0:
        time.sleep(0.1)
        try:
            with sqlite3.connect(ledger) as db:
                acked = db.execute("SELECT COUNT(*) FROM delete_batches WHERE status='acknowledged'").fetchone()[0]
        except sqlite3.OperationalError:
            continue  # the table is created when deletes are planned
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert acked >= 1
    with sqlite3.connect(ledger) as db:
        done = {r[0] for r in db.execute("SELECT external_id FROM deleted_users")}
    first = sandbox.stats()["requests_by_endpoint"]["/users/delete"]
    sandbox.set_faults(latency_ms=0)
    code, summary = _run("sync", src, state, env)
    assert code == 0, summary
    assert not done & set(summary["deletes"]["deleted_ids"])  # acknowledged ids are not sent again
    assert len(done) + summary["deletes"]["requested"] == 150
    assert sandbox.stats()["requests_by_endpoint"]["/users/delete"] - first == summary["deletes"]["requests"]
    assert summary["deletes"]["requests"] <= 3 - len(done) // 50
    assert not _known(sandbox) & set(ids)
    assert not _snapshot_ids(state) & set(ids)


def test_verify_reports_a_deleted_user_that_still_exists(sandbox, tmp_path):
    from braze_migrate.ops import verify as v

    env, state = _env(sandbox, tmp_path), tmp_path / "state"
    assert _run("backfill", _export(tmp_path / "d1", IDS), state, env)[0] == 0
    src = _export(tmp_path / "d2", IDS, deletes=["u001", "u002"])
    assert _run("sync", src, state, env)[0] == 0
    report = v.verify(str(src), state, 50, endpoint=sandbox.url, api_key=API_KEY)
    assert report.ok and report.deleted_checked == 2 and report.sampled == 40
    sandbox.patch_user("u002", create=True, custom_attributes={"city": "Oslo"})  # re-created by someone
    report = v.verify(str(src), state, 50, endpoint=sandbox.url, api_key=API_KEY)
    assert [(m.external_id, m.kind) for m in report.mismatches] == [("u002", "deleted_user_exists")]
