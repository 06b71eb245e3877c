"""Several workers loading one run: shared rate budget, claims, and a killed worker's claims taken over.

The run is started as users start it (`braze-migrate backfill ... --no-prefect`), and a second process joins
it (`braze-migrate load-worker`), against a sandbox of its own with
a tight limit that answers 429 to any request over it in a window.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from braze_migrate.run.engine import Engine, open_run_ledger
from braze_migrate.settings import load_settings
from tests.conftest import API_KEY
from tests.exports import bulk_export, occurrence_counts
from tests.test_ledger_pg import pg_url  # noqa: F401 - fixture

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent
LIMIT = "40/1s"
USERS = 600  # 1,800 objects (attributes, a purchase, an event each), 10 per request: ~180 batches, ~5 s at 38/s
RUN_TIMEOUT_S = 120  # a bound, not an expectation


@pytest.fixture
def tight_sandbox():
    """A dedicated sandbox at 40 requests per 1 s window."""
    from braze_sandbox import SandboxConfig, start_sandbox

    with start_sandbox(SandboxConfig(api_key=API_KEY, rate_limit=LIMIT)) as handle:
        yield handle


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_env(request) -> dict[str, str]:
    """Environment choosing the ledger: SQLite in the state folder, or PostgreSQL in a schema of its own."""
    if request.param == "sqlite":
        return {}
    return {"BRAZE_MIGRATE_LEDGER_URL": request.getfixturevalue("pg_url")}


def worker_env(sandbox, ledger_env: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "BRAZE_MIGRATE_LEDGER_URL"}
    return {**env, **ledger_env, "BRAZE_REST_ENDPOINT": sandbox.url, "BRAZE_API_KEY": API_KEY,
            "BRAZE_MIGRATE_CONCURRENCY": "8"}


def waits(worker: subprocess.Popen) -> bool:
    """Whether `worker` says it is waiting for a run (within the run's time bound)."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        ready, _, _ = select.select([worker.stderr], [], [], deadline - time.monotonic())
        line = worker.stderr.readline() if ready else ""
        if "waiting up to" in line:
            return True
        if not line:
            return False
    return False


def expected_ids(n: int) -> set[str]:
    return {f"p-{i:06d}-0" for i in range(n)} | {f"e-{i:06d}-0" for i in range(n)}


def test_two_workers_share_the_limit_and_send_every_batch_once(tight_sandbox, ledger_env, tmp_path, monkeypatch):
    """The joiner is started first and waits for the run, so both processes load however slowly each starts:
    the run's ~180 batches take over 4 s to send (the rate limit), the joiner polls every 0.5 s."""
    src = bulk_export(tmp_path / "export", USERS)
    state = tmp_path / "state"
    env = worker_env(tight_sandbox, ledger_env)
    joiner = subprocess.Popen(
        [sys.executable, "-m", "braze_migrate.cli.main", "load-worker", "--state", str(state), "--json", "--wait-for-run",
         str(RUN_TIMEOUT_S)],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert waits(joiner), "the joiner ended before it waited for the run"
    main = subprocess.Popen(
        [str(BIN / "braze-migrate"), "backfill", str(src), "--state", str(state), "--no-prefect", "--json",
         "--rate-limit", LIMIT, "--batch-size", "10"],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = main.communicate(timeout=RUN_TIMEOUT_S)
    w_out, w_err = joiner.communicate(timeout=RUN_TIMEOUT_S)
    assert main.returncode == 0, err[-2000:]
    assert joiner.returncode == 0, w_err[-2000:]
    summary = json.loads(out.strip().splitlines()[-1])
    joined = json.loads(w_out.strip().splitlines()[-1])

    assert summary["status"] == "completed" and summary["in_doubt"] == []
    assert summary["acknowledged_batches"] == summary["batches"] >= 3 * USERS // 10
    assert joined["run_id"] == summary["run_id"] and joined["batches"] > 0 and joined["leases"] > 0

    for key, value in ledger_env.items():
        monkeypatch.setenv(key, value)
    ledger = open_run_ledger(load_settings(state=state))
    try:
        batches = ledger.batches(summary["run_id"])
        workers = [w for w in ledger.workers(summary["run_id"]) if w["batches"]]
    finally:
        ledger.close()
    assert all(b["status"] == "acknowledged" and b["attempts"] == 1 for b in batches)
    assert {w["pid"] for w in workers} == {main.pid, joiner.pid}  # both processes did part of the work
    assert sum(w["batches"] for w in workers) == summary["batches"]

    stats = tight_sandbox.stats()
    # The sandbox answers 429 to every request beyond 40 in a 1 s window: none means no window was exceeded.
    assert stats["throttled"] <= stats["requests"] // 100
    counts = occurrence_counts(tight_sandbox.profiles())
    assert all(counts.get(key) == 1 for key in expected_ids(USERS))  # every batch acknowledged exactly once
    assert len(counts) == 2 * USERS


def test_a_killed_workers_claims_are_sent_once_and_not_in_doubt(tight_sandbox, ledger_env, tmp_path, monkeypatch):
    src = bulk_export(tmp_path / "export", 100)
    state = tmp_path / "state"
    for key, value in ledger_env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings(state=state, rate_limit=LIMIT, batch_size=10, concurrency=8)
    engine = Engine(settings)
    try:
        prepared = engine.prepare("backfill", str(src), plan_while_loading=False)
        run_id = prepared.run_id
        claim = ("import os, signal, sys; from braze_migrate.run.engine import open_run_ledger;"
                 "from braze_migrate.settings import load_settings;"
                 "led = open_run_ledger(load_settings(state=sys.argv[1])); w = led.register_worker(sys.argv[2]);"
                 "print(json.dumps([c.batch_no for c in led.claim(sys.argv[2], w, 5)]), flush=True);"
                 "os.kill(os.getpid(), signal.SIGKILL)")
        killed = subprocess.run([sys.executable, "-c", "import json;" + claim, str(state), run_id],
                                env={**os.environ}, cwd=ROOT, capture_output=True, text=True, check=False)
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
        claimed = json.loads(killed.stdout)
        assert len(claimed) == 5 and engine.ledger.status_counts(run_id)["claimed"] == 5

        started = time.monotonic()
        engine.apply(prepared, tight_sandbox.url, API_KEY)
        summary = engine.finish(prepared, started=started)
        rows = {b["batch_no"]: b for b in engine.ledger.batches(run_id)}
    finally:
        engine.close()

    assert summary["status"] == "completed" and summary["in_doubt"] == []
    assert all(rows[b]["status"] == "acknowledged" and rows[b]["in_doubt"] == 0 and rows[b]["attempts"] == 1
               for b in claimed)
    assert all(b["status"] == "acknowledged" for b in rows.values())
    counts = occurrence_counts(tight_sandbox.profiles())
    assert all(counts.get(key) == 1 for key in expected_ids(100))
    assert tight_sandbox.stats()["throttled"] == 0


def test_a_stopped_worker_hands_back_its_claims(tight_sandbox, ledger_env, tmp_path, monkeypatch):
    src = bulk_export(tmp_path / "export", 300)
    state = tmp_path / "state"
    for key, value in ledger_env.items():
        monkeypatch.setenv(key, value)
    engine = Engine(load_settings(state=state, rate_limit=LIMIT, batch_size=10, concurrency=8))
    try:
        prepared = engine.prepare("backfill", str(src), plan_while_loading=False)
        engine.ledger.set_run_status(prepared.run_id, "loading")  # as its own command does once guards pass
        worker = subprocess.Popen(
            [sys.executable, "-m", "braze_migrate.cli.main", "load-worker", "--state", str(state), "--json"],
            env=worker_env(tight_sandbox, ledger_env), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while engine.ledger.status_counts(prepared.run_id).get("acknowledged", 0) < 5:
            assert worker.poll() is None and time.monotonic() < deadline, "the worker ended or stalled early"
            time.sleep(0.02)
        worker.send_signal(signal.SIGINT)  # the first one: finish what is in flight, start nothing new
        out, err = worker.communicate(timeout=RUN_TIMEOUT_S)
        assert worker.returncode == 3, err[-2000:]
        assert json.loads(out.strip().splitlines()[-1])["stopped"] is True
        counts = engine.ledger.status_counts(prepared.run_id)
        assert set(counts) == {"acknowledged", "planned"}  # nothing left claimed or in flight

        engine.apply(prepared, tight_sandbox.url, API_KEY)
        summary = engine.finish(prepared, started=time.monotonic())
    finally:
        engine.close()
    assert summary["status"] == "completed" and summary["in_doubt"] == []
    counts = occurrence_counts(tight_sandbox.profiles())
    assert all(counts.get(key) == 1 for key in expected_ids(300))


def test_a_helper_waits_for_a_planning_run_but_not_for_a_dead_planner(tmp_path):
    """While a first load still plans, a helper with nothing to claim waits; it stops waiting once the plan
    is complete, the run stops loading, or no batch was recorded for the stall bound (the planner died)."""
    from braze_migrate.run.workers import still_planning

    engine = Engine(load_settings(state=tmp_path / "state"))
    try:
        run_id = engine.ledger.new_run("backfill", "src", "fp", {})
        engine.ledger.set_run_status(run_id, "loading")
        plan_dir = engine.run_dir(run_id) / "plan"
        plan_dir.mkdir(parents=True)
        now = [0.0]
        planning = still_planning(engine.ledger, run_id, plan_dir, stall_s=60, clock=lambda: now[0])
        assert planning()
        now[0] = 59.0
        engine.ledger.add_batches(run_id, [(0, False, 1)])  # the planner recorded a batch: alive
        assert planning()
        now[0] = 118.0
        assert planning()
        now[0] = 119.5
        assert not planning()  # nothing recorded for 60 s
        fresh = still_planning(engine.ledger, run_id, plan_dir, stall_s=60, clock=lambda: now[0])
        assert fresh()
        (plan_dir / "complete").write_text("")
        assert not fresh()
    finally:
        engine.close()
