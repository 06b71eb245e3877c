"""The ledger's claim contract on both backends, PostgreSQL over a real connection included.

Each PostgreSQL test works in a schema of its own (dropped afterwards), so the tests can run repeatedly and
side by side. The server is conftest's `pg_server`: BRAZE_MIGRATE_TEST_PG (default 127.0.0.1:5432/test) when it
answers, else an embedded one.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from braze_migrate.settings import ConfigError, load_settings
from connectors.braze.outcomes import BatchResult, ObjectError
from connectors.state.ledger import Claim, Ledger, LedgerUnavailable
from connectors.state.ledger_pg import PgLedger, redact_url, split_schema
from connectors.state.ledgers import open_ledger

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def pg_url(pg_server):
    """A ledger URL whose tables live in a fresh schema, dropped after the test."""
    schema = f"bm_test_{uuid.uuid4().hex[:10]}"
    yield f"{pg_server}?schema={schema}"
    with psycopg.connect(pg_server, autocommit=True) as con:
        con.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger(request, tmp_path):
    """A fresh ledger on each backend."""
    if request.param == "sqlite":
        led = Ledger(tmp_path / "ledger.sqlite")
    else:
        led = PgLedger(request.getfixturevalue("pg_url"))
    yield led
    led.close()


def result(batch_no, status="acknowledged", errors=(), pending=(), in_doubt=False):
    return BatchResult(batch_no, status, list(errors), list(pending), in_doubt, 1, 0, 0, {"201": 1})


def planned_run(led, n=10):
    run = led.new_run("backfill", "src", "fp", {"rate_limit": "40/1s"})
    led.add_batches(run, [(i, i % 2 == 0, 3) for i in range(n)])
    led.set_run_status(run, "planned")
    return run


def test_existing_interface_works_on_both_backends(ledger):
    run = planned_run(ledger, 2)
    ledger.mark_sending(run, 0)
    assert ledger.batch_statuses(run) == {0: "sending", 1: "planned"}
    ledger.record_result(run, result(0, errors=[ObjectError("attributes", 1, "EMAIL_BAD_FORMAT")],
                                     pending=[("events", 0)], status="pending", in_doubt=True))
    assert ledger.outcomes(run) == [(0, "attributes", 1, "rejected", "EMAIL_BAD_FORMAT"),
                                    (0, "events", 0, "pending", "in doubt")]
    assert ledger.totals(run) == {"batches": 2, "requests": 1, "retries": 0, "throttled": 0,
                                  "acknowledged_batches": 0, "in_doubt_batches": 1, "objects": 6,
                                  "acknowledged_objects": 0}
    assert ledger.unfinished_run().run_id == run
    ledger.set_run_status(run, "committed", {"status": "completed"})
    assert ledger.unfinished_run() is None and ledger.run(run).summary == {"status": "completed"}
    assert [r.run_id for r in ledger.runs()] == [run]
    assert [b["status"] for b in ledger.batches(run)] == ["pending", "planned"]


def test_claims_are_disjoint_blocks_in_batch_order(ledger):
    run = planned_run(ledger)
    a, b = ledger.register_worker(run), ledger.register_worker(run)
    first, second = ledger.claim(run, a, 4), ledger.claim(run, b, 4)
    assert [c.batch_no for c in first] == [0, 1, 2, 3] and [c.batch_no for c in second] == [4, 5, 6, 7]
    assert not any(c.in_doubt for c in first + second)
    assert ledger.status_counts(run) == {"claimed": 8, "planned": 2}
    assert ledger.claimable(run) == 2


def test_only_the_owner_of_a_claim_may_mark_it_sending(ledger):
    run = planned_run(ledger)
    a, b = ledger.register_worker(run), ledger.register_worker(run)
    ledger.claim(run, a, 1)
    assert ledger.mark_sending(run, 0, b) is False
    assert ledger.mark_sending(run, 0, a) is True
    assert ledger.mark_sending(run, 0, a) is False  # already sending: a second send is refused too


def test_expired_claims_come_back_never_sent_and_sending_ones_in_doubt(ledger):
    run = planned_run(ledger, 3)
    dead, alive = ledger.register_worker(run), ledger.register_worker(run)
    now = time.time()
    ledger.claim(run, dead, 2, lease_seconds=10, now=now)
    ledger.mark_sending(run, 1, dead)
    assert ledger.claim(run, alive, 5, now=now + 5) == [Claim(2, False)]  # leases still running: only batch 2
    taken = ledger.claim(run, alive, 5, now=now + 11)
    assert [(c.batch_no, c.in_doubt) for c in taken] == [(0, False), (1, True)]


def test_heartbeat_keeps_claims_and_release_returns_them(ledger):
    run = planned_run(ledger, 4)
    a, b = ledger.register_worker(run), ledger.register_worker(run)
    now = time.time()
    ledger.claim(run, a, 2, lease_seconds=10, now=now)
    ledger.heartbeat(run, a, lease_seconds=10, now=now + 8)
    assert [c.batch_no for c in ledger.claim(run, b, 5, now=now + 12)] == [2, 3]
    assert ledger.finish_worker(run, a) == 2
    assert ledger.status_counts(run) == {"planned": 2, "claimed": 2}
    assert [w["finished_at"] is not None for w in ledger.workers(run)] == [True, False]


def test_claims_of_a_killed_process_on_this_host_expire_at_once(ledger, tmp_path, pg_url_or_path):
    run = planned_run(ledger, 6)
    code = ("import os, signal, sys; from pathlib import Path; from connectors.state.ledgers import open_ledger;"
            "state, url, run = sys.argv[1:]; led = open_ledger(Path(state), url or None);"
            "w = led.register_worker(run); led.claim(run, w, 3); led.mark_sending(run, 1, w);"
            "os.kill(os.getpid(), signal.SIGKILL)")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path), pg_url_or_path(ledger), run], cwd=ROOT,
                          check=False)
    assert proc.returncode == -signal.SIGKILL
    assert ledger.status_counts(run) == {"claimed": 2, "sending": 1, "planned": 3}
    me = ledger.register_worker(run)
    assert [c.batch_no for c in ledger.claim(run, me, 10)] == [3, 4, 5]  # the dead one's lease still runs
    assert len(ledger.expire_dead_owners(run)) == 1
    assert [(c.batch_no, c.in_doubt) for c in ledger.claim(run, me, 10)] == [(0, False), (1, True), (2, False)]
    assert ledger.expire_dead_owners(run) == []  # a live owner (this process) is never expired


@pytest.fixture
def pg_url_or_path():
    """The URL a subprocess needs to open the same ledger ('' for SQLite in its state folder)."""
    return lambda led: led.url if isinstance(led, PgLedger) else ""


def test_concurrent_claimers_never_get_the_same_batch(ledger):
    run = planned_run(ledger, 300)
    got: list[list[int]] = []

    def claimer():
        own = ledger.reopen()
        worker = own.register_worker(run)
        mine = []
        while claims := own.claim(run, worker, 7):
            mine += [c.batch_no for c in claims]
        got.append(mine)
        own.close()

    threads = [threading.Thread(target=claimer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [b for mine in got for b in mine]
    assert sorted(every) == list(range(300)) and len(every) == len(set(every))


def test_budget_lease_counts_per_window_over_all_workers(ledger):
    other = ledger.reopen()
    try:
        assert [ledger.lease("k", 7, 10, 4), other.lease("k", 7, 10, 4), ledger.lease("k", 7, 10, 4)] == [
            (4, 7), (4, 7), (2, 7)]
        assert other.lease("k", 7, 10, 4) == (0, 7)
        assert ledger.lease("k", 6, 10, 4) == (0, 7)  # a lagging clock's window gets nothing
        assert other.lease("k", 8, 10, 4) == (4, 8)  # a new window starts from zero
        assert ledger.lease("k", 8, 5, 4) == (1, 8)  # a lowered cap holds for everyone from now on
        assert other.lease("k", 8, 10, 4) == (0, 8)
        assert ledger.lease("other", 8, 10, 4) == (4, 8)
    finally:
        other.close()


def test_ledger_url_chooses_postgresql_and_keeps_the_password_out(pg_url, tmp_path, monkeypatch):
    monkeypatch.setenv("BRAZE_MIGRATE_LEDGER_URL", pg_url)
    led = open_ledger(tmp_path, load_settings().ledger_url.get_secret_value())
    assert isinstance(led, PgLedger)
    led.close()
    assert not (tmp_path / "ledger.sqlite").exists()

    secret = "s3cret-pw"
    bad = f"postgresql://postgres:{secret}@127.0.0.1:1/test?schema=x"
    assert redact_url(bad) == "postgresql://postgres:***@127.0.0.1:1/test?schema=x"
    assert split_schema(bad)[1] == "x"
    with pytest.raises(LedgerUnavailable) as caught:
        PgLedger(bad, connect_timeout=2)
    assert secret not in str(caught.value) and "127.0.0.1" in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__

    from braze_migrate.run.engine import Engine

    monkeypatch.setenv("BRAZE_MIGRATE_LEDGER_URL", bad)
    with pytest.raises(ConfigError) as config:
        Engine(load_settings(state=tmp_path / "state"))
    assert secret not in str(config.value)
    monkeypatch.setenv("BRAZE_MIGRATE_LEDGER_URL", "mysql://x")
    with pytest.raises(ConfigError):
        load_settings()


def test_run_settings_never_record_the_ledger_url(pg_url, tmp_path, monkeypatch):
    from braze_migrate.run.engine import _public_settings

    monkeypatch.setenv("BRAZE_MIGRATE_LEDGER_URL", pg_url)
    assert "ledger_url" not in _public_settings(load_settings(state=tmp_path))
