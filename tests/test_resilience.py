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

from tests.conftest import API_KEY
from tests.exports import bulk_export, occurrence_counts

BIN = Path(sys.executable).parent


def cli(args, env, **kw):
    return subprocess.Popen([str(BIN / "braze-migrate"), *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def acknowledged_batches(state: Path) -> int:
    db = state / "ledger.sqlite"
    if not db.exists():
        return 0
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            return con.execute("SELECT COUNT(*) FROM batches WHERE status='acknowledged'").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


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
