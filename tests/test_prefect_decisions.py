"""Trusting the nightly run unattended, end to end through a real Prefect server.

The alert automations of `automations/` are applied with their own command against a webhook receiver on
loopback; the deployments are served from a subprocess. A nightly sync whose export lost two columns pauses
and asks (nothing sent, the "held" alert posted); an answer through the Prefect API resumes it and it sends
exactly the held plan. A run that fails ends Failed with its message and no traceback in its logs, and the
"failed" alert reaches the webhook.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import polars as pl
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, TaskRunFilter
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL, temporary_settings

from automations.apply import apply, load_specs, webhook_block
from connectors.state.ledger import Ledger
from tests.conftest import API_KEY
from tests.conftest_prefect import prefect_server, serving, wait_for  # noqa: F401 - fixture

ROOT = Path(__file__).resolve().parent.parent
DAY1, DAY2 = ROOT / "data/samples/day1", ROOT / "data/samples/day2"
DEPLOYMENTS = ["sync/nightly-sync", "backfill/backfill"]
RUN_TIMEOUT_S = 300  # bounds, not expectations
ALERT_TIMEOUT_S = 60

pytestmark = pytest.mark.timeout(900)


class Receiver:
    """A webhook receiver on loopback: every JSON body posted to it, in arrival order."""

    def __init__(self):
        self.posts: list[dict] = []
        received = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.append(json.loads(body or b"{}"))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, needle: str) -> dict:
        found: list[dict] = []

        def check() -> bool:
            found[:] = [p for p in self.posts if needle in json.dumps(p)]
            return bool(found)

        wait_for(check, ALERT_TIMEOUT_S, f"an alert mentioning {needle!r} (received: {self.posts})")
        return found[0]


@pytest.fixture(scope="module")
def prefect_api(prefect_server):  # noqa: F811 - the imported fixture
    with temporary_settings(updates={PREFECT_API_URL: prefect_server.api_url}):
        yield prefect_server


DEADLINE_TEST_S = 10  # the least Prefect allows for a proactive trigger


@pytest.fixture(scope="module")
def receiver(prefect_api):
    """The repository's automations to a loopback webhook, plus the deadline one with a deadline of seconds."""
    r = Receiver()
    specs = load_specs()
    deadline = next(dict(s, name=s["name"] + " (test)") for s in specs if "deadline" in s["name"])
    deadline["trigger"] = dict(deadline["trigger"], within=DEADLINE_TEST_S)
    apply([*specs, deadline], webhook_block(r.url))
    yield r
    r.server.shutdown()


@pytest.fixture(scope="module")
def served(prefect_api, sandbox_server, tmp_path_factory):
    env = {
        "BRAZE_REST_ENDPOINT": sandbox_server.url,
        "BRAZE_API_KEY": API_KEY,
        "BRAZE_MIGRATE_MAX_ATTEMPTS": "2",
        "BRAZE_MIGRATE_MAX_RETRY_SECONDS": "10",
    }
    log = tmp_path_factory.mktemp("serve-decisions") / "serve.log"
    with serving(prefect_api, env, log, DEPLOYMENTS):
        yield log


def logs_of(client, run) -> list[str]:
    def read() -> list[str]:
        return [log.message for log in client.read_logs(LogFilter(flow_run_id={"any_": [run.id]}), limit=200)]

    wait_for(lambda: any("Finished in state" in line for line in read()), 60, f"logs of {run.name}")
    return read()


def test_apply_command_replaces_automations_by_name(prefect_api, receiver):
    apply(load_specs(), webhook_block(receiver.url))
    with get_client(sync_client=True) as client:
        names = [a.name for a in client.read_automations()]
    for spec in load_specs():
        assert names.count(spec["name"]) == 1


def test_failed_nightly_run_reads_as_failure_and_fires_the_webhook(served, receiver, tmp_path):
    run = run_deployment("sync/nightly-sync", timeout=RUN_TIMEOUT_S, poll_interval=0.5, parameters={
        "source": str(tmp_path / "no-such-export"), "state": str(tmp_path / "state")})
    assert run.state.is_failed(), run.state
    assert "no-such-export" in (run.state.message or "")
    alert = receiver.wait_for(run.name)
    assert "Failed" in alert["subject"] and "no-such-export" in alert["body"]
    assert "Traceback" not in alert["body"]
    with get_client(sync_client=True) as client:
        lines = logs_of(client, run)
    assert not any("Traceback" in line or "unexpected exception" in line for line in lines), lines


def sent(sandbox) -> int:
    return sum(sandbox.stats()["objects"].values())


def wait_for_state(client, run_id, name: str):
    """The flow run once its state is `name` (Paused, ...)."""
    found = []

    def check() -> bool:
        found[:] = [client.read_flow_run(run_id)]
        return found[0].state is not None and found[0].state.name == name

    wait_for(check, RUN_TIMEOUT_S, f"flow run {run_id} {name}")
    return found[0]


def wait_final(client, run_id):
    found = []

    def check() -> bool:
        found[:] = [client.read_flow_run(run_id)]
        return found[0].state is not None and found[0].state.is_final()

    wait_for(check, RUN_TIMEOUT_S, f"flow run {run_id} to finish")
    return found[0]


def wait_final_or_paused(client, run_id, not_state_id):
    """The flow run once final, or paused again (a state other than `not_state_id`)."""
    found = []

    def check() -> bool:
        found[:] = [client.read_flow_run(run_id)]
        state = found[0].state
        return state is not None and (state.is_final() or (state.is_paused() and state.id != not_state_id))

    wait_for(check, RUN_TIMEOUT_S, f"flow run {run_id} to finish or ask again")
    return found[0]


@pytest.fixture
def backfilled(sandbox_server, monkeypatch, tmp_path):
    """Day 1 loaded into a fresh sandbox and state folder (inline: the deployments are what is under test)."""
    from braze_migrate.cli.main import main

    sandbox_server.reset()
    sandbox_server.set_faults(fail_rate=0.0, applied_then_fail_rate=0.0, reset_rate=0.0, storm_rate=0.0,
                              latency_ms=0)
    monkeypatch.setenv("BRAZE_REST_ENDPOINT", sandbox_server.url)
    monkeypatch.setenv("BRAZE_API_KEY", API_KEY)
    state = tmp_path / "state"
    assert main(["backfill", str(DAY1), "--state", str(state), "--no-prefect", "--json"]) == 0
    return state


def test_guarded_nightly_run_pauses_and_an_answer_through_the_api_sends_the_held_plan(
        served, receiver, backfilled, sandbox_server, tmp_path):
    from prefect.flow_runs import resume_flow_run

    broken = tmp_path / "tonight"
    shutil.copytree(DAY2, broken)
    for part in (broken / "users").glob("*.parquet"):
        frame = pl.read_parquet(part)
        frame.with_columns(pl.lit(None, frame.schema["email"]).alias("email"),
                           pl.lit(None, frame.schema["loyalty_tier"]).alias("loyalty_tier")).write_parquet(part)
    before = sent(sandbox_server)
    run = run_deployment("sync/nightly-sync", timeout=0, parameters={
        "source": str(broken), "state": str(backfilled), "guards": {"decision_timeout": RUN_TIMEOUT_S}})
    with get_client(sync_client=True) as client:
        paused = wait_for_state(client, run.id, "Paused")
        assert re.fullmatch(r"sync-\d{4}-\d\d-\d\d-state-\d{8}T\d{6}-[0-9a-f]{6}", paused.name), paused.name
        alert = receiver.wait_for(f"{paused.name} is held")  # kind, logical date, state folder, run id
        assert "waiting for a decision" in alert["body"] and "email: " in alert["body"]  # the figures too
        assert "accept or hold" in alert["body"] and "/runs/flow-run/" in alert["body"]  # the form's choices, a link
        receiver.wait_for(f"{paused.name} has not finished")  # the deadline (here seconds) went by
        assert sent(sandbox_server) == before  # paused: nothing sent
        resume_flow_run(run.id, run_input={"decision": "accept", "answered_by": "ops on call"})
        final = wait_final(client, run.id)
        assert final.state.is_completed(), final.state
        lines = logs_of(client, final)
    assert any("email: " in line and "would be unset" in line for line in lines)
    assert any("accept by ops on call at " in line for line in lines)  # the decision, who, when, logged
    ledger = Ledger(backfilled / "ledger.sqlite")
    try:
        newest = ledger.runs(limit=1)[0]
        planned = sum(b["n_objects"] for b in ledger.batches(newest.run_id))
    finally:
        ledger.close()
    # The planned objects and the credentials check's one object (counted processed, and dropped: no such user).
    assert newest.status == "committed" and sent(sandbox_server) - before == planned + 2


def test_unanswered_decision_ends_failed_sends_nothing_and_a_retry_asks_again(served, receiver, backfilled, sandbox_server, tmp_path):
    half = tmp_path / "tonight"
    shutil.copytree(DAY2, half)
    purchases = pl.read_csv(half / "purchases.csv", infer_schema=False)
    purchases.head(purchases.height // 2).write_csv(half / "purchases.csv")
    before = sent(sandbox_server)
    run = run_deployment("sync/nightly-sync", timeout=RUN_TIMEOUT_S, poll_interval=0.5, parameters={
        "source": str(half), "state": str(backfilled), "guards": {"decision_timeout": 20}})  # the retry's answer must beat it under load
    assert run.state.is_failed(), run.state
    assert "purchases: rows down" in run.state.message and "nobody answered in time" in run.state.message
    assert sent(sandbox_server) == before
    with get_client(sync_client=True) as client:
        lines = logs_of(client, run)
    assert any("held by the guards, nothing was sent: purchases: rows down" in line for line in lines)
    assert not any("Traceback" in line for line in lines), [line for line in lines if "Traceback" in line]
    receiver.wait_for(f"{run.name} ended Failed")  # the failure alert

    # Retry, as the UI's button does: the same held plan (not planned again) asks again; accepted, it is sent.
    from prefect.flow_runs import resume_flow_run
    from prefect.states import AwaitingRetry

    with get_client(sync_client=True) as client:
        client.set_flow_run_state(run.id, AwaitingRetry(), force=True)
        wait_for_state(client, run.id, "Paused")
        assert sent(sandbox_server) == before
        resume_flow_run(run.id, run_input={"decision": "accept"})
        final = wait_final(client, run.id)
    assert final.state.is_completed(), final.state
    assert sent(sandbox_server) > before
    ledger = Ledger(backfilled / "ledger.sqlite")
    try:
        syncs = [r for r in ledger.runs(limit=10) if r.kind == "sync"]
    finally:
        ledger.close()
    assert [r.status for r in syncs] == ["committed"]  # one plan: held, asked twice, sent once


def test_run_with_pending_batches_fails_on_its_load_task_without_a_traceback(
        served, receiver, backfilled, sandbox_server):
    sandbox_server.set_faults(fail_rate=1.0)  # Braze answers every request with a 5xx
    try:
        run = run_deployment("sync/nightly-sync", timeout=RUN_TIMEOUT_S, poll_interval=0.5, parameters={
            "source": str(DAY2), "state": str(backfilled), "guards": {"decision_timeout": 2}})
    finally:
        sandbox_server.set_faults(fail_rate=0.0)
    assert run.state.is_failed(), run.state
    # Its events are in doubt: the decision table's steps, settle first (braze_migrate/run/advice.py).
    assert run.state.message.startswith("incomplete: ") and "; next: braze-migrate settle " in run.state.message
    assert ", then braze-migrate sync " in run.state.message
    with get_client(sync_client=True) as client:
        tasks = {t.name.split("-")[0]: t.state.type.value
                 for t in client.read_task_runs(task_run_filter=TaskRunFilter(flow_run_id={"any_": [run.id]}))}
        lines = logs_of(client, run)
    assert tasks["load"] == "FAILED" and tasks["commit"] == "COMPLETED" and tasks["plan"] == "COMPLETED"
    assert not any("Traceback" in line or "unexpected exception" in line for line in lines), lines
    receiver.wait_for(f"{run.name} is held")  # its events/purchases in doubt: it asked first
    alert = receiver.wait_for(f"{run.name} ended Failed")
    assert "; next: braze-migrate settle " in alert["body"] and "Traceback" not in alert["body"]


def test_in_doubt_events_answered_settle_are_checked_then_sent_once(served, receiver, backfilled, sandbox_server):
    """The decision table on the form (braze_migrate/run/advice.py): settle (the check against Braze), then only
    the batches it could not decide are offered a resend, by number; each event ends stored once."""
    from prefect.flow_runs import resume_flow_run

    sandbox_server.set_faults(fail_rate=1.0)  # every request answered 5xx: its events/purchases are in doubt
    stored = sandbox_server.stats()["events_stored"]
    run = run_deployment("sync/nightly-sync", timeout=0, parameters={
        "source": str(DAY2), "state": str(backfilled), "guards": {"decision_timeout": RUN_TIMEOUT_S}})
    with get_client(sync_client=True) as client:
        try:
            paused = wait_for_state(client, run.id, "Paused")
        finally:
            sandbox_server.set_faults(fail_rate=0.0)
        assert "answer settle or hold" in paused.state.message and "resend" not in paused.state.message
        resume_flow_run(run.id, run_input={"decision": "settle", "answered_by": "ops"})
        final = wait_final_or_paused(client, run.id, paused.state.id)
        if final.state.is_paused():  # batches the check could not decide (users Braze did not know yet)
            assert "undecided by the check: answer delivered, resend or hold" in final.state.message
            assert re.search(r"a resend may duplicate up to \d+ events and \d+ purchases", final.state.message)
            resume_flow_run(run.id, run_input={"decision": "resend", "answered_by": "ops"})
            final = wait_final(client, run.id)
        lines = logs_of(client, final)
    assert final.state.is_completed(), final.state
    assert any("decision on " in line and ": settle by ops" in line for line in lines)
    _resumed_once(final, backfilled, sandbox_server, stored)


def test_batches_the_check_cannot_decide_are_asked_about_by_number(served, receiver, backfilled, sandbox_server,
                                                                   tmp_path):
    """An event older than Braze's 90-day aggregates cannot be decided by the check: after "settle", a second form
    names its batch with the most duplicates a resend may cause; answered "resend", the plain resume sends it once
    and completes the run."""
    from prefect.flow_runs import resume_flow_run

    night = tmp_path / "tonight"
    shutil.copytree(DAY2, night)
    old = (datetime.now(UTC) - timedelta(days=200)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    with open(night / "events.ndjson", "a") as fh:
        fh.write(json.dumps({"event_id": "E-too-old", "external_id": "000001", "name": "app_open", "time": old,
                             "properties": None}) + "\n")
    sandbox_server.set_faults(fail_rate=1.0)
    stored = sandbox_server.stats()["events_stored"]
    run = run_deployment("sync/nightly-sync", timeout=0, parameters={
        "source": str(night), "state": str(backfilled), "guards": {"decision_timeout": RUN_TIMEOUT_S}})
    with get_client(sync_client=True) as client:
        try:
            paused = wait_for_state(client, run.id, "Paused")
        finally:
            sandbox_server.set_faults(fail_rate=0.0)
        resume_flow_run(run.id, run_input={"decision": "settle", "answered_by": "ops"})
        again = wait_final_or_paused(client, run.id, paused.state.id)
        assert again.state.is_paused(), again.state
        message = again.state.message
        assert "undecided by the check: answer delivered, resend or hold" in message, message
        assert re.search(r"batch\(es\) [\d, ]+ of run \S+ undecided .*a resend may duplicate up to \d+ events "
                         r"and \d+ purchases", message), message
        receiver.wait_for("undecided by the check")  # the held alert carries the second question too
        resume_flow_run(run.id, run_input={"decision": "resend", "answered_by": "ops"})
        final = wait_final(client, run.id)
        lines = logs_of(client, final)
    assert final.state.is_completed(), final.state
    assert any("settled as resend by ops" in line for line in lines), lines
    _resumed_once(final, backfilled, sandbox_server, stored)


def _resumed_once(final, state: Path, sandbox_server, stored: int) -> None:
    """After the form's answers: the asking sync ended incomplete, the plain resume completed and names the flow
    run (it publishes the report), and every event it acknowledged is stored once."""
    ledger = Ledger(state / "ledger.sqlite")
    try:
        syncs = [r.summary for r in ledger.runs(limit=10) if r.kind == "sync"]
    finally:
        ledger.close()
    assert [s["status"] for s in syncs] == ["completed", "incomplete"]  # the plain resume, then the asking one
    assert final.name.endswith(syncs[0]["run_id"]), (final.name, syncs[0]["run_id"])
    acked = sum(s["datasets"]["events"]["acknowledged"] for s in syncs)
    assert acked > 0 and sandbox_server.stats()["events_stored"] - stored == acked  # each event stored once


def test_apply_command_says_what_is_missing(capsys, monkeypatch):
    from automations.apply import WEBHOOK_ENV, main

    monkeypatch.delenv(WEBHOOK_ENV, raising=False)
    with temporary_settings(updates={PREFECT_API_URL: None}):
        assert main(["--webhook-url", "http://127.0.0.1:9/x"]) == 2
    assert "PREFECT_API_URL is not set" in capsys.readouterr().err
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        assert main([]) == 2
    assert "--webhook-url URL" in capsys.readouterr().err


def test_no_run_of_this_module_logged_an_engine_crash(served):
    """Last: by now every run above has ended and its process's output reached the serve log. A run that ends
    Failed on purpose must not read as a crash ("Engine execution exited with unexpected exception")."""
    text = served.read_text(errors="replace")
    assert "Finished in state Failed" in text
    assert "Engine execution exited with unexpected exception" not in text
    assert "Traceback" not in text
