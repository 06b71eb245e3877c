"""The parallel backfill flow for real: a local Dask cluster of two worker processes, the ledger in
PostgreSQL, the sandbox over HTTP. Both Dask workers plan units of the run and load part of it; every batch is
acknowledged once."""

from __future__ import annotations

import json
import os

import pytest
from prefect.settings import PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
from prefect.testing.utilities import prefect_test_harness

from braze_migrate.run.engine import open_run_ledger
from braze_migrate.settings import load_settings
from tests.exports import bulk_export, occurrence_counts
from tests.test_ledger_pg import pg_url  # noqa: F401 - fixture

USERS = 600  # 1,800 objects in ~180 batches of 10; a worker sends 2 at a time at 50 ms each: ~5 s alone, ~2.5 s for two

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def local_prefect():
    """A temporary Prefect server that the harness drains and stops with the test, reached the way local mode
    (the CLI) reaches its own: without PREFECT_API_URL, so the flow must hand its address to the Dask workers."""
    with prefect_test_harness(server_startup_timeout=120), temporary_settings(
            updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}, restore_defaults={PREFECT_API_URL}):
        yield


def test_backfill_parallel_on_two_dask_workers(braze_env, pg_url, local_prefect, tmp_path, monkeypatch):  # noqa: F811
    from flows.parallel import backfill_parallel

    sandbox = braze_env
    sandbox.set_faults(latency_ms=50)  # the workers' time goes to Braze, as in production, not to start-up
    monkeypatch.setenv("BRAZE_MIGRATE_LEDGER_URL", pg_url)  # the Dask worker processes inherit it
    monkeypatch.setenv("PREFECT_LOGGING_LEVEL", "WARNING")
    src = bulk_export(tmp_path / "export", USERS)
    state = tmp_path / "state"

    final = backfill_parallel(source=str(src), state=str(state), workers=2, requests={"batch_size": 10, "concurrency": 2},
                              rows={"users_per_partition": 100}, return_state=True)
    assert final.is_completed(), final.message
    summary = final.result().to_json()  # the flow returns its RunSummary
    assert summary["status"] == "completed"
    assert summary["acknowledged_batches"] == summary["batches"] >= 3 * USERS // 10

    ledger = open_run_ledger(load_settings(state=state))
    try:
        batches = ledger.batches(summary["run_id"])
        workers = [w for w in ledger.workers(summary["run_id"]) if w["batches"]]
    finally:
        ledger.close()
    assert all(b["status"] == "acknowledged" and b["attempts"] == 1 for b in batches)
    pids = {w["pid"] for w in workers}
    assert len(pids) == 2 and os.getpid() not in pids  # two Dask worker processes, not the flow's
    assert sorted(r["pid"] for r in summary["workers"]) == sorted(pids)

    # The plan's units (6 of users, 6 of purchases, 6 of events) were planned by plan-unit tasks on the workers.
    units = [json.loads(u.read_text()) for u in state.glob("runs/*/plan/units/unit-*.json")]
    assert len(units) == 18
    assert len({u["pid"] for u in units}) == 2 and os.getpid() not in {u["pid"] for u in units}

    counts = occurrence_counts(sandbox.profiles())
    expected = {f"p-{i:06d}-0" for i in range(USERS)} | {f"e-{i:06d}-0" for i in range(USERS)}
    assert all(counts.get(key) == 1 for key in expected) and len(counts) == len(expected)
    assert sandbox.stats()["throttled"] == 0
