"""Surviving Braze failing and ourselves failing: faults over real HTTP, kill -9, resume."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cli_run import acknowledged_batches
from tests.conftest import API_KEY
from tests.exports import bulk_export, occurrence_counts

BIN = Path(sys.executable).parent


def cli(args, env, **kw):
    return subprocess.Popen([str(BIN / "braze-migrate"), *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)




def in_doubt_ids(summary: dict, state: Path) -> set[str]:
    """Purchase/event ids of the batches the summary lists as in doubt."""
    import polars as pl

    batches = [b["batch_no"] for b in summary["in_doubt"]]
    if not batches:
        return set()
    objs = pl.read_parquet(state / "runs" / summary["run_id"] / "plan" / "objects" / "*.parquet")
    return set(objs.filter(pl.col("batch_no").is_in(batches) & pl.col("dataset").is_in(["events", "purchases"]))
               ["key"].to_list())


def test_kill_9_at_random_moments_then_resume_is_exact(braze_env, tmp_path):
    sandbox = braze_env
    sandbox.set_faults(latency_ms=15)
    src = bulk_export(tmp_path / "export", 1500, purchases_per_user=1, events_per_user=1)
    state = tmp_path / "state"
    env = {**os.environ}
    args = ["backfill", str(src), "--state", str(state), "--no-prefect", "--json", "--concurrency", "4"]
    rng = random.Random(7)
    for _ in range(2):
        proc = cli(args, env)
        target = acknowledged_batches(state) + rng.randint(3, 15)
        deadline = time.monotonic() + 60
        while acknowledged_batches(state) < target and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    final = cli(args, env)
    out, err = final.communicate(timeout=120)
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["resumed"] is True
    assert summary["status"] in ("completed", "incomplete"), err

    counts = occurrence_counts(sandbox.profiles())
    doubtful = in_doubt_ids(summary, state)
    expected = {f"p-{i:06d}-0" for i in range(1500)} | {f"e-{i:06d}-0" for i in range(1500)}
    for key in expected - doubtful:
        assert counts.get(key) == 1, key  # acknowledged exactly once: no acknowledged batch was resent
    for key in doubtful:
        assert counts.get(key, 0) <= 1  # --in-doubt skip: held, never sent twice
    users = {k: v for k, v in sandbox.profiles().items() if v.get("external_id")}
    assert len(users) == 1500
    assert all(u["custom_attributes"]["city"] == "Oslo" for u in users.values())


@pytest.fixture
def faulty_sandbox():
    """A sandbox that answers 10% of requests with a 5xx, applies 2% and then answers 5xx, at 40 req/s."""
    from braze_sandbox import SandboxConfig, start_sandbox

    cfg = SandboxConfig(api_key=API_KEY, rate_limit="40/1s", fail_rate=0.10, applied_then_fail_rate=0.02, seed=5)
    with start_sandbox(cfg) as handle:
        yield handle


def engine_run(kind, source, state, url, **opts):
    from braze_migrate.run.engine import Engine
    from braze_migrate.settings import load_settings

    engine = Engine(load_settings(state=state, rate_limit="40/1s", retry_backoff_seconds=0.05, **opts))
    try:
        prepared = engine.prepare(kind, str(source))
        engine.apply(prepared, url, API_KEY)
        return engine.finish(prepared, started=time.monotonic())
    finally:
        engine.close()


@pytest.mark.parametrize("policy", ["skip", "resend"])
def test_faults_then_sync_end_exact_except_listed_in_doubt(policy, faulty_sandbox, tmp_path):
    import polars as pl

    state = tmp_path / "state"
    day1 = bulk_export(tmp_path / "day1", 500)
    day2 = bulk_export(tmp_path / "day2", 700, city="Bergen")
    s1 = engine_run("backfill", day1, state, faulty_sandbox.url, in_doubt=policy)
    s2 = engine_run("sync", day2, state, faulty_sandbox.url, in_doubt=policy)
    stats = faulty_sandbox.stats()
    assert stats["faults"], "the sandbox injected no fault: the test proves nothing"

    doubtful = in_doubt_ids(s1, state) | in_doubt_ids(s2, state)
    counts = occurrence_counts(faulty_sandbox.profiles())
    expected = {f"p-{i:06d}-0" for i in range(700)} | {f"e-{i:06d}-0" for i in range(700)}
    held_file = state / "snapshot" / "held.parquet"
    held = set(pl.read_parquet(held_file)["key"].to_list()) if held_file.exists() else set()
    for key in expected - doubtful:
        assert counts.get(key) == 1, key
    for key in doubtful:
        if policy == "skip":
            assert counts.get(key, 0) <= 1 and (key in held or counts.get(key) == 1)
        else:
            assert 1 <= counts.get(key, 0) <= 2
    if policy == "skip":
        assert s2["datasets"]["purchases"]["pending"] + s2["datasets"]["events"]["pending"] == len(held)
    users = {k: v for k, v in faulty_sandbox.profiles().items() if v.get("external_id")}
    assert len(users) == 700 and all(u["custom_attributes"]["city"] == "Bergen" for u in users.values())
    requests = stats["requests"]
    assert stats["throttled"] < 0.01 * requests


@pytest.mark.parametrize("mode", ["--no-prefect", None])
def test_sigterm_finishes_in_flight_records_them_and_prints_the_resume_command(mode, braze_env, tmp_path):
    sandbox = braze_env
    sandbox.set_faults(latency_ms=20)
    src = bulk_export(tmp_path / "export", 1500)
    state = tmp_path / "state"
    args = ["backfill", str(src), "--state", str(state), "--json", "--concurrency", "2"] + ([mode] if mode else [])
    proc = cli(args, {**os.environ})
    deadline = time.monotonic() + 120
    while acknowledged_batches(state) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 3, err[-3000:]
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["status"] == "interrupted"
    assert summary["resume_command"].startswith("braze-migrate backfill")
    assert "Traceback" not in err
    statuses = sqlite3.connect(state / "ledger.sqlite").execute(
        "SELECT status, COUNT(*) FROM batches GROUP BY status").fetchall()
    assert "sending" not in dict(statuses)  # in-flight requests were finished and recorded

    sandbox.set_faults(latency_ms=0)
    final = cli(["backfill", str(src), "--state", str(state), "--json", "--no-prefect"], {**os.environ})
    out, err = final.communicate(timeout=120)
    assert final.returncode == 0, err[-3000:]
    counts = occurrence_counts(sandbox.profiles())
    assert len(counts) == 3000 and set(counts.values()) == {1}
