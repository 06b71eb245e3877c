"""Tonight's export through a real Prefect server and the sandbox: the served `nightly-sync` deployment fills its
templated source with the scheduled night (in the schedule's time zone), waits for a folder that appears late,
fails at its deadline with one line and an alert, sends nothing for last night's export again, and starts on
the `braze-migrate.export.ready` event a warehouse job emits (`braze-migrate emit-ready`, the plain HTTP call
with curl, or `prefect event emit`).

Nothing here depends on wall-clock speed: the late folder is written once the run is seen waiting, deadlines
are seconds, and every wait is a bounded poll.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, FlowRunFilter, LogFilter
from prefect.deployments import run_deployment

from automations.apply import apply, load_specs, webhook_block
from connectors.state.ledger import Ledger
from tests.conftest import API_KEY
from tests.conftest_prefect import prefect_api, prefect_server, serving, wait_for  # noqa: F401 - fixtures
from tests.test_prefect_decisions import Receiver

ROOT = Path(__file__).resolve().parent.parent
DAY1, DAY2 = ROOT / "data/samples/day1", ROOT / "data/samples/day2"
RUN_TIMEOUT_S = 300  # bounds, not expectations

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def receiver(prefect_api):  # noqa: F811 - the imported fixture
    r = Receiver()
    apply(load_specs(), webhook_block(r.url))
    yield r
    r.server.shutdown()


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    """The exports folder the warehouse writes dated folders into, and the state folder (absolute)."""
    root = tmp_path_factory.mktemp("tonight")
    return root / "exports", root / "state"


@pytest.fixture(scope="module")
def served(prefect_api, sandbox_server, night, tmp_path_factory):  # noqa: F811 - the imported fixture
    exports, state = night
    exports.mkdir()
    env = {
        "BRAZE_REST_ENDPOINT": sandbox_server.url,
        "BRAZE_API_KEY": API_KEY,
        "BRAZE_MIGRATE_STATE": str(state),
        "BRAZE_MIGRATE_READY_MARKER": "_SUCCESS",
        "BRAZE_MIGRATE_READY_POLL_SECONDS": "0.5",
    }
    log = tmp_path_factory.mktemp("serve-tonight") / "serve.log"
    with serving(prefect_api, env, log, ["sync/nightly-sync"]):
        yield log


def sent(sandbox) -> int:
    return sum(sandbox.stats()["objects"].values())


def read_run(run_id):
    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id)


def final(run_id):
    found = []

    def check() -> bool:
        found[:] = [read_run(run_id)]
        return found[0].state is not None and found[0].state.is_final()

    wait_for(check, RUN_TIMEOUT_S, f"flow run {run_id} to finish")
    return found[0]


def logs(run_id) -> list[str]:
    with get_client(sync_client=True) as client:
        return [line.message for line in client.read_logs(LogFilter(flow_run_id={"any_": [run_id]}), limit=200)]


def artifact(run_id, key: str):
    """The data of the run's artifact `key` (a progress artifact's is its percentage)."""
    with get_client(sync_client=True) as client:
        found = [a for a in client.read_artifacts() if a.key == key and a.flow_run_id == run_id]
    return found[0].data if found else None


def newest_summary(state: Path) -> dict:
    ledger = Ledger(state / "ledger.sqlite")
    try:
        return ledger.runs(limit=1)[0].summary
    finally:
        ledger.close()


def test_scheduled_run_waits_for_its_late_folder_then_loads_it(served, night, sandbox_server):
    exports, state = night
    before = sent(sandbox_server)
    # Due two nights ago at 23:30 UTC, which is already the next day in Europe/Berlin, the schedule's time zone.
    due = datetime.now(UTC).replace(hour=23, minute=30, second=0, microsecond=0) - timedelta(days=2)
    night_of = (due + timedelta(days=1)).date().isoformat()
    run = run_deployment("sync/nightly-sync", timeout=0, scheduled_time=due,
                         parameters={"source": str(exports / "{date:%Y-%m-%d}"), "readiness": {"ready_deadline": RUN_TIMEOUT_S}})
    wait_for(lambda: any("readiness: waiting for _SUCCESS" in line for line in logs(run.id)), RUN_TIMEOUT_S,
             "the run waiting for its export")
    assert sent(sandbox_server) == before
    folder = exports / night_of  # the warehouse finishes late: the folder, then its marker
    shutil.copytree(DAY1, folder)
    (folder / "_SUCCESS").write_text("")
    done = final(run.id)
    assert done.state.is_completed(), done.state
    summary = newest_summary(state)
    assert summary["source"] == str(folder)
    report = artifact(run.id, "sync-report")
    assert "| waited |" in report and "| export | " + str(folder) + ": _SUCCESS found after" in report
    assert artifact(run.id, "sync-readiness") is not None  # the wait, shown while it lasted
    acknowledged = sum(d["acknowledged"] for d in summary["datasets"].values())
    # The loaded rows, and the credentials checks' objects (one per check: counted, dropped as no such user).
    assert acknowledged > 0 and 0 <= sent(sandbox_server) - before - acknowledged <= 2
    assert done.name == f"sync-{night_of}-state-{summary['run_id']}"


def test_last_nights_export_again_sends_nothing_and_says_so(served, night, sandbox_server):
    exports, state = night
    first = newest_summary(state)  # the run of the test above
    before = sent(sandbox_server)
    run = run_deployment("sync/nightly-sync", timeout=RUN_TIMEOUT_S, poll_interval=0.5,
                         parameters={"source": str(exports / "{date}"), "date": Path(first["source"]).name})
    assert run.state.is_completed(), run.state
    assert run.state.message == (f"unchanged since run {first['run_id']}: the export is the one that run loaded; "
                                 "nothing was sent")
    assert sent(sandbox_server) == before
    assert artifact(run.id, "sync-report").startswith(f"# sync {newest_summary(state)['run_id']}: unchanged since run {first['run_id']}")


def test_marker_that_never_comes_fails_at_the_deadline_with_one_line_and_an_alert(served, night, receiver):
    exports, _ = night
    # A nested parameter: `readiness.ready_deadline` set by the run; the section's unset `ready_marker` is the
    # worker's BRAZE_MIGRATE_READY_MARKER (_SUCCESS, in `served`), the rule of docs/prefect.md.
    run = run_deployment("sync/nightly-sync", timeout=RUN_TIMEOUT_S, poll_interval=0.5, parameters={
        "source": str(exports / "{date}"), "date": "2000-01-01", "readiness": {"ready_deadline": 2}})
    assert run.state.is_failed(), run.state
    message = run.state.message
    assert message == (f"export not ready: {exports / '2000-01-01' / '_SUCCESS'} did not appear within 2 s; check "
                       "the warehouse's export job, then run again (or raise --ready-deadline)")
    alert = receiver.wait_for(f"{run.name} ended Failed")
    assert message in alert["body"] and "/runs/flow-run/" in alert["body"] and "Run: None" not in alert["body"]
    assert not any("Traceback" in line for line in logs(run.id))
    (taken,) = [line for line in logs(run.id) if line.startswith("options from this worker's environment")]
    assert "ready_marker=_SUCCESS" in taken and "ready_poll_seconds=0.5" in taken and "ready_deadline" not in taken


def _curl(api_url: str, folder: Path) -> list[str]:
    """The plain HTTP call of docs/prefect.md ("Start on an event"), for a job without Python."""
    body = json.dumps([{"id": str(uuid.uuid4()), "occurred": datetime.now(UTC).isoformat(),
                        "event": "braze-migrate.export.ready",
                        "resource": {"prefect.resource.id": "braze-migrate.export.nightly",
                                     "braze-migrate.source": str(folder)}}])
    return ["curl", "-fsS", "-X", "POST", f"{api_url}/events", "-H", "Content-Type: application/json", "-d", body]


EMITTERS = {
    # The warehouse job's one command (docs/prefect.md, "Start on an event").
    "braze-migrate emit-ready": lambda api_url, folder: [
        sys.executable, "-m", "braze_migrate.cli.main", "emit-ready", str(folder)],
    "curl": _curl,
    "prefect event emit": lambda api_url, folder: [
        sys.executable, "-m", "prefect", "event", "emit", "braze-migrate.export.ready",
        "--resource-id", "braze-migrate.export.nightly", "--resource", f"braze-migrate.source={folder}"],
}


@pytest.mark.parametrize("how", list(EMITTERS))
def test_an_emitted_event_starts_a_sync_of_the_folder_it_names(served, prefect_api, night, sandbox_server, how):  # noqa: F811
    exports, state = night
    folder = exports / f"2000-01-0{2 + list(EMITTERS).index(how)}"
    shutil.copytree(DAY2, folder)
    (folder / "_SUCCESS").write_text("")
    before = sent(sandbox_server)
    done = subprocess.run(EMITTERS[how](prefect_api.api_url, folder), env=prefect_api.env, check=False,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    if how == "braze-migrate emit-ready":
        assert f"emitted braze-migrate.export.ready for {folder} to {prefect_api.api_url}" in done.stdout
    started = []

    def a_run_of_that_folder() -> bool:
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(deployment_filter=DeploymentFilter(name={"any_": ["nightly-sync"]}),
                                         flow_run_filter=FlowRunFilter())
        started[:] = [r for r in runs if r.parameters.get("source") == str(folder)]
        return bool(started)

    wait_for(a_run_of_that_folder, RUN_TIMEOUT_S, "a run started by the event")
    done = final(started[0].id)
    assert done.state.is_completed(), done.state
    summary = newest_summary(state)
    assert summary["source"] == str(folder) and summary["kind"] == "sync"
    # The same day's export under another name is unchanged since the first of these runs: nothing resent.
    assert sent(sandbox_server) > before if not summary.get("unchanged_since") else sent(sandbox_server) == before


def test_the_served_deployment_shows_sections_typed_with_defaults_and_state_required(served, night):
    """Issue 26, item 8, from the server's side: the deployment's parameter schema (what the Parameters tab and
    the custom-run form render) has `source` and `state` required and one section per group of options, each
    field typed with its default; `flows.serve` gave the deployment the worker's BRAZE_MIGRATE_STATE as its
    `state`, so the form shows it."""
    _, state = night
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("sync/nightly-sync")
    schema = deployment.parameter_openapi_schema
    assert schema["required"] == ["source", "state"] and schema["properties"]["state"]["type"] == "string"
    readiness = schema["definitions"]["Readiness"]["properties"]
    assert readiness["ready_deadline"] == {"default": 7200, "description": readiness["ready_deadline"]["description"],
                                           "minimum": 0, "title": "ready_deadline", "type": "integer"}
    assert schema["properties"]["guards"]["default"]["decision_timeout"] == 21600
    assert deployment.parameters["state"] == str(state)
    assert deployment.parameters["requests"]["rate_limit"] == "3000/3s"


def test_a_run_without_state_is_refused_and_a_relative_one_fails_with_one_line(served):
    """`state` is required: the server refuses to create a run whose parameters lack it (the deployment's own
    state aside, a section given replaces the deployment's, not `state`); a relative one ends Failed, one line."""
    from prefect.exceptions import PrefectHTTPStatusError

    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("sync/nightly-sync")
        try:
            client.update_deployment(deployment.id, _without_state(deployment))
            with pytest.raises(PrefectHTTPStatusError, match="'state' is a required property"):
                client.create_flow_run_from_deployment(deployment.id, parameters={"source": "/srv/exports"})
        finally:
            client.update_deployment(deployment.id, _with(deployment.parameters))
    run = run_deployment("sync/nightly-sync", timeout=RUN_TIMEOUT_S, poll_interval=0.5,
                         parameters={"source": str(DAY1), "state": "state"})
    assert run.state.is_failed(), run.state
    assert run.state.message.startswith("this deployment's state folder is 'state', not an absolute path: set its "
                                        "`state` parameter")
    assert not any("Traceback" in line for line in logs(run.id))


def _without_state(deployment):
    return _with({k: v for k, v in deployment.parameters.items() if k != "state"})


def _with(parameters: dict):
    from prefect.client.schemas.actions import DeploymentUpdate

    return DeploymentUpdate(parameters=parameters)
