"""Sending while planning (issue 11): kill -9 during a pipelined backfill while later units are still being
planned, then the same command → the exact state, with the units written before the kill kept as they were."""

from __future__ import annotations

import json
import os
import signal
import time

from tests.exports import bulk_export, occurrence_counts
from tests.test_resilience import acknowledged_batches, cli, in_doubt_ids

USERS = 1500


def test_kill_9_while_later_units_are_planned_then_same_command_is_exact(braze_env, tmp_path):
    sandbox = braze_env
    sandbox.set_faults(latency_ms=15)
    src = bulk_export(tmp_path / "export", USERS, purchases_per_user=1, events_per_user=1)
    state = tmp_path / "state"
    # 50 rows per partition: 30 users units, 30 purchases units, 30 events units.
    args = ["backfill", str(src), "--state", str(state), "--no-prefect", "--json", "--concurrency", "4",
            "--users-per-partition", "50"]
    proc = cli(args, {**os.environ})
    deadline = time.monotonic() + 60
    while acknowledged_batches(state) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, proc.communicate()[1][-3000:]  # still running: killed mid-plan below
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    plan_dir = next(state.glob("runs/*/plan"))
    written = {p.name: p.read_bytes() for p in (plan_dir / "units").glob("unit-*.json")}
    layout = json.loads((plan_dir / "layout.json").read_text())
    assert acknowledged_batches(state) >= 3  # batches went out before the plan was complete
    assert not (plan_dir / "complete").exists() and 0 < len(written) < len(layout["units"])

    final = cli(args, {**os.environ})
    out, err = final.communicate(timeout=180)
    assert out.strip(), err[-3000:]
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["resumed"] is True
    assert summary["status"] in ("completed", "incomplete"), err
    assert (plan_dir / "complete").exists()
    for name, content in written.items():  # units planned before the kill were kept, not planned again
        assert (plan_dir / "units" / name).read_bytes() == content

    counts = occurrence_counts(sandbox.profiles())
    doubtful = in_doubt_ids(summary, state)
    expected = {f"p-{i:06d}-0" for i in range(USERS)} | {f"e-{i:06d}-0" for i in range(USERS)}
    for key in expected - doubtful:
        assert counts.get(key) == 1, key  # sent exactly once: nothing acknowledged was sent again
    assert set(counts) <= expected
    users = {k: v for k, v in sandbox.profiles().items() if v.get("external_id")}
    assert len(users) == USERS
    assert all(u["custom_attributes"]["city"] == "Oslo" for u in users.values())


def test_a_missing_column_stops_a_first_backfill_before_anything_is_sent(braze_env, tmp_path):
    """A first backfill plans while it loads, yet a missing column still stops it before any request, and once
    the export is fixed the same command plans afresh (the failed run is dropped, not resumed)."""
    import polars as pl

    src = bulk_export(tmp_path / "export", 200, purchases_per_user=1, events_per_user=1)
    events = pl.read_parquet(src / "events.parquet")
    events.drop("event_id").write_parquet(src / "events.parquet")
    state = tmp_path / "state"
    args = ["backfill", str(src), "--state", str(state), "--no-prefect", "--json"]
    out, err = cli(args, {**os.environ}).communicate(timeout=120)
    assert "required column 'event_id' is missing" in err and "Traceback" not in err
    assert braze_env.profiles() == {}
    events.write_parquet(src / "events.parquet")
    out, err = cli(args, {**os.environ}).communicate(timeout=120)
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["status"] == "completed" and summary["resumed"] is False, err
    assert len(occurrence_counts(braze_env.profiles())) == 400
