"""Issue 13 point 8: events and purchases held in doubt are settled, by a person or by reading Braze back,
and afterwards every occurrence is in Braze exactly once and later syncs exit 0."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from tests.cli_run import run_cli
from tests.conftest import API_KEY
from tests.exports import occurrence_counts

N_USERS = 150


cli = run_cli


def recent_export(folder: Path) -> Path:
    """Users with one event and one purchase each, a day old (inside Braze's 90-day aggregates)."""
    folder.mkdir(parents=True)
    when = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    ids = [f"user-{i:04d}" for i in range(N_USERS)]
    pl.DataFrame({"external_id": ids, "city": ["Oslo"] * N_USERS}).write_parquet(folder / "users.parquet")
    pl.DataFrame({"event_id": [f"e-{i}" for i in range(N_USERS)], "external_id": ids, "name": ["visit"] * N_USERS,
                  "time": [when] * N_USERS, "properties": [json.dumps({"id": f"e-{i}"}) for i in range(N_USERS)]}
                 ).write_parquet(folder / "events.parquet")
    pl.DataFrame({"purchase_id": [f"p-{i}" for i in range(N_USERS)], "external_id": ids,
                  "product_id": ["sku"] * N_USERS, "currency": ["EUR"] * N_USERS, "price": [2.0] * N_USERS,
                  "time": [when] * N_USERS, "properties": [json.dumps({"id": f"p-{i}"}) for i in range(N_USERS)]}
                 ).write_parquet(folder / "purchases.parquet")
    return folder


@pytest.fixture
def case(tmp_path):
    """A backfill against a sandbox that answers 5xx to a third of the requests, more than half of them after
    applying them, with one attempt per request: several batches end in doubt. Then the faults stop."""
    from braze_sandbox import SandboxConfig, start_sandbox

    source = recent_export(tmp_path / "export")
    state = tmp_path / "state"
    cfg = SandboxConfig(api_key=API_KEY, fail_rate=0.15, applied_then_fail_rate=0.2, seed=11)
    with start_sandbox(cfg) as handle:
        env = {**os.environ, "BRAZE_REST_ENDPOINT": handle.url, "BRAZE_API_KEY": API_KEY,
               "BRAZE_MIGRATE_MAX_ATTEMPTS": "1", "BRAZE_MIGRATE_BATCH_SIZE": "20"}
        done = cli("backfill", source, "--state", state, "--no-prefect", "--json", env=env)
        assert done.returncode == 1, done.stderr[-2000:]
        summary = json.loads(done.stdout.strip().splitlines()[-1])
        assert summary["in_doubt"], "the faults left nothing in doubt: change the seed"
        handle.set_faults(fail_rate=0.0, applied_then_fail_rate=0.0)
        yield handle, env, source, state, summary


def ids_in_doubt(state: Path, summary: dict) -> set[str]:
    batches = [b["batch_no"] for b in summary["in_doubt"]]
    objs = pl.read_parquet(state / "runs" / summary["run_id"] / "plan" / "objects" / "*.parquet")
    return set(objs.filter(pl.col("batch_no").is_in(batches) & pl.col("dataset").is_in(["events", "purchases"]))
               ["key"].to_list())


def test_check_settles_by_reading_braze_back_then_everything_is_there_once(case):
    handle, env, source, state, summary = case
    held = ids_in_doubt(state, summary)
    before = occurrence_counts(handle.profiles())
    landed = {k for k in held if before.get(k)}
    assert landed and held - landed, "the faults should leave both kinds in doubt"
    done = cli("settle", summary["run_id"], "--check", "--state", state, "--json", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert result["undecided"] == [] and result["occurrences"] == len(held)
    # Every batch went the way Braze's own records say.
    again = cli("sync", source, "--state", state, "--no-prefect", "--json", env=env)
    assert again.returncode == 0, again.stderr[-2000:]
    counts = occurrence_counts(handle.profiles())
    assert all(counts.get(f"e-{i}") == 1 and counts.get(f"p-{i}") == 1 for i in range(N_USERS)), counts
    later = cli("sync", source, "--state", state, "--no-prefect", "--json", env=env)
    assert later.returncode == 0 and json.loads(later.stdout.strip().splitlines()[-1])["requests"] == 0


def test_a_person_settles_batches_by_hand(case):
    _, env, source, state, summary = case
    batches = [b["batch_no"] for b in summary["in_doubt"]]
    done = cli("settle", summary["run_id"], "--resend", *batches, "--state", state, env=env)
    assert done.returncode == 0 and "settled as resend" in done.stdout
    again = cli("sync", source, "--state", state, "--no-prefect", "--json", env=env)
    assert again.returncode == 0, again.stderr[-2000:]
    sent = json.loads(again.stdout.strip().splitlines()[-1])
    assert sent["datasets"]["events"]["acknowledged"] + sent["datasets"]["purchases"]["acknowledged"] == len(
        ids_in_doubt(state, summary))


def test_settle_refuses_what_it_cannot_do_in_one_line(case):
    _, env, _, state, summary = case
    unknown = cli("settle", "20990101T000000-abcdef", "--delivered", "--state", state, env=env)
    assert unknown.returncode == 2 and "no run" in unknown.stderr and len(unknown.stderr.strip().splitlines()) == 1
    wrong = cli("settle", summary["run_id"], "--delivered", "99999", "--state", state, env=env)
    assert wrong.returncode == 2 and "has no batch 99999" in wrong.stderr


def test_the_next_sync_settles_what_braze_decides_by_itself(case):
    import sqlite3

    handle, env, source, state, _ = case
    con = sqlite3.connect(state / "ledger.sqlite")  # the backfill was committed an hour ago
    con.execute("UPDATE runs SET updated_at = updated_at - 3600")
    con.commit()
    con.close()
    done = cli("sync", source, "--state", state, "--no-prefect", "--json", env=env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert any("settled by reading Braze back" in n for n in result["notes"]), result["notes"]
    counts = occurrence_counts(handle.profiles())
    assert all(counts.get(f"e-{i}") == 1 and counts.get(f"p-{i}") == 1 for i in range(N_USERS))


def test_a_run_committed_moments_ago_is_not_checked_yet(case):
    _, env, source, state, _ = case
    done = cli("sync", source, "--state", state, "--no-prefect", "--json", env=env)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert not any("settled by reading Braze back" in n for n in result["notes"])
    assert done.returncode == 1  # still held, for the next run (or a person)
