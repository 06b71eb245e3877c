"""One run per state folder: a second holder is refused at once with a line naming the running run, on the
file lock (SQLite ledger) and on the PostgreSQL ledger's advisory lock (shared by machines that do not share
the file); a holder killed with SIGKILL leaves a stale record that the next run takes over without waiting."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from connectors.state.lock import StateInUse, current_holder, run_lock

ROOT = Path(__file__).resolve().parent.parent
HOLDER = """
import sys
from pathlib import Path
from connectors.state.lock import run_lock
with run_lock(Path(sys.argv[1]), "sync exports/tonight", ledger_url=sys.argv[2] or None) as lock:
    lock.name_run("20261202T020000-holder")
    print("held", flush=True)
    sys.stdin.read()
"""


@pytest.fixture
def pg_url(pg_server):
    schema = f"bm_lock_{uuid.uuid4().hex[:10]}"
    yield f"{pg_server}?schema={schema}"
    with psycopg.connect(pg_server, autocommit=True) as con:
        con.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def start_holder(state: Path, url: str | None = None) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(state), url or ""], cwd=ROOT, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    line = proc.stdout.readline()
    assert line.strip() == "held", proc.stderr.read()
    return proc


def stale_after_takeover(state: Path, url: str | None, bound_s: float = 30.0):
    """Take the lock once free (the server ends a killed client's session within moments: a bound, not a
    wait) and return the record the dead holder left."""
    deadline = time.monotonic() + bound_s
    while True:
        try:
            with run_lock(state, "sync exports/next", ledger_url=url) as lock:
                return lock.stale
        except StateInUse:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_second_run_is_refused_naming_the_holder_and_a_killed_holder_is_taken_over(tmp_path):
    state = tmp_path / "state"
    proc = start_holder(state)
    try:
        with pytest.raises(StateInUse) as refused, run_lock(state, "sync exports/next"):
            pass
        message = str(refused.value)
        assert "\n" not in message
        assert "run 20261202T020000-holder" in message and f"pid {proc.pid}" in message
        assert "sync exports/tonight" in message and "load-worker" in message
        assert current_holder(state).run_id == "20261202T020000-holder"
        status = subprocess.run([sys.executable, "-m", "braze_migrate.cli.main", "status", "--state", str(state)], cwd=ROOT, check=True,
                                capture_output=True, text=True, timeout=120)
        assert f"in use by run 20261202T020000-holder (sync exports/tonight, pid {proc.pid}" in status.stdout
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # The kernel dropped the dead holder's flock: taken at once, and its leftover record is reported.
    with run_lock(state, "sync exports/next") as lock:
        assert lock.stale is not None and lock.stale.run_id == "20261202T020000-holder"
        assert lock.holder.pid == os.getpid()
    assert current_holder(state) is None
    with run_lock(state, "sync exports/next") as lock:
        assert lock.stale is None  # a clean release leaves no record


def test_reentrant_in_one_process_and_released_at_the_outermost_exit(tmp_path):
    state = tmp_path / "state"
    with run_lock(state, "sync a") as outer:
        with run_lock(state, "sync a") as inner:
            assert inner is outer
        outer.name_run("r1")
        assert current_holder(state).run_id == "r1"
    assert current_holder(state) is None


def test_postgres_ledger_refuses_a_run_from_another_state_folder_and_survives_kill_9(tmp_path, pg_url):
    proc = start_holder(tmp_path / "machine-a", pg_url)
    try:
        # Another machine: its own folder, the same ledger database.
        with (pytest.raises(StateInUse, match="run 20261202T020000-holder"),
              run_lock(tmp_path / "machine-b", "sync exports/next", ledger_url=pg_url)):
            pass
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    stale = stale_after_takeover(tmp_path / "machine-b", pg_url)
    assert stale is not None and stale.run_id == "20261202T020000-holder"
    with run_lock(tmp_path / "machine-b", "sync exports/next", ledger_url=pg_url) as lock:
        assert lock.stale is None


def test_ledgers_in_two_schemas_of_one_database_are_locked_apart(tmp_path, pg_server):
    """Two state folders whose PostgreSQL ledgers live in two schemas of one database run at once; the run lock
    is taken per schema (an advisory lock spans the whole database)."""
    schemas = [f"bm_lock_{uuid.uuid4().hex[:10]}" for _ in range(2)]
    first, second = (f"{pg_server}?schema={s}" for s in schemas)
    proc = start_holder(tmp_path / "a", first)
    try:
        with run_lock(tmp_path / "b", "sync exports/next", ledger_url=second) as lock:
            assert lock.stale is None
        with (pytest.raises(StateInUse, match="run 20261202T020000-holder"),
              run_lock(tmp_path / "c", "sync exports/next", ledger_url=first)):
            pass
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        with psycopg.connect(pg_server, autocommit=True) as con:
            for schema in schemas:
                con.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_two_concurrent_syncs_on_one_state_one_runs_one_is_refused(braze_env, tmp_path, capsys):
    """The first sync is stopped (SIGSTOP) while it holds the folder, so the second meets it whatever the
    machine's speed; resumed, the first finishes; every event and purchase reached Braze once."""
    from braze_migrate.cli.main import main

    sandbox, state = braze_env, tmp_path / "state"
    assert main(["backfill", str(ROOT / "data/samples/day1"), "--state", str(state), "--no-prefect", "--json"]) == 0
    backfill = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    sandbox.set_faults(latency_ms=100)  # keeps the first sync loading for a while (bound: its 9 requests)
    first = subprocess.Popen(
        [sys.executable, "-m", "braze_migrate.cli.main", "sync", str(ROOT / "data/samples/day2"), "--state", str(state),
         "--no-prefect", "--json", "--concurrency", "1"],
        cwd=ROOT, env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while (current_holder(state) is None or current_holder(state).run_id is None) and first.poll() is None:
            assert time.monotonic() < deadline, "the first sync never held the state folder"
            time.sleep(0.05)
        first.send_signal(signal.SIGSTOP)
        holder = current_holder(state)
        assert holder is not None and holder.pid == first.pid
        assert main(["sync", str(ROOT / "data/samples/day2"), "--state", str(state), "--no-prefect"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith(f"braze-migrate: error: state folder {state} is in use by run {holder.run_id}")
    finally:
        first.send_signal(signal.SIGCONT)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-2000:]
    sync = json.loads(out.strip().splitlines()[-1])
    assert sync["run_id"] == holder.run_id and sync["status"] == "completed"
    sandbox.set_faults(latency_ms=0)
    assert main(["sync", str(ROOT / "data/samples/day2"), "--state", str(state), "--no-prefect", "--json"]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["acknowledged_batches"] == 0  # nothing left to send twice
    stats = sandbox.stats()
    for name, stored in (("events", "events_stored"), ("purchases", "purchases_stored")):
        assert stats[stored] == backfill["datasets"][name]["acknowledged"] + sync["datasets"][name]["acknowledged"]
