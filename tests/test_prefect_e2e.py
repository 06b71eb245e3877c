"""End to end through Prefect: a real server, our deployments served, runs triggered through the API.

Backfill day 1 and sync day 2 against the sandbox over HTTP, alter one profile and verify day 2 (Failed,
naming that user only); then a load against a Braze that answers only 5xx ends Failed with the resume
command. Everything is read back through the Prefect client:
final states, the progress artifact, the buckets table (against the ledger), the reports, and every log
line, which must hold no email, phone, token or API key. The key reaches the flows only through a Prefect
Secret block: the served process has its name, never its value.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import polars as pl
import pytest
from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, LogFilter
from prefect.client.schemas.objects import StateType
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL, temporary_settings

from braze_migrate.ops import verify as verify_logic
from connectors.sources import scan_folder
from connectors.state.ledger import Ledger
from tests.conftest import API_KEY
from tests.conftest_prefect import prefect_server, serving, wait_for  # noqa: F401 - fixture

ROOT = Path(__file__).resolve().parent.parent
DAY1, DAY2 = ROOT / "data/samples/day1", ROOT / "data/samples/day2"
SECRET_BLOCK = "braze-api-key-e2e"
ALTERED_VALUE = "tin-e2e-altered"
DEPLOYMENTS = ["backfill/backfill", "sync/nightly-sync", "verify/verify"]
PERSONAL_COLUMNS = ("email", "phone", "token")
RUN_TIMEOUT_S = 300  # bound, not expectation

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def prefect_api(prefect_server):  # noqa: F811 - the imported fixture
    with temporary_settings(updates={PREFECT_API_URL: prefect_server.api_url}):
        yield prefect_server


@pytest.fixture(scope="module")
def served(prefect_api, sandbox_server, tmp_path_factory):
    """Our deployments served from a subprocess that knows the Secret block's name, not the key."""
    Secret(value=API_KEY).save(SECRET_BLOCK, overwrite=True)
    env = {
        "BRAZE_REST_ENDPOINT": sandbox_server.url,
        "BRAZE_API_KEY": None,
        "BRAZE_API_KEY_SECRET_BLOCK": SECRET_BLOCK,
        # One retry, soon given up: the failing-Braze run below ends quickly whatever the machine.
        "BRAZE_MIGRATE_MAX_ATTEMPTS": "2",
        "BRAZE_MIGRATE_MAX_RETRY_SECONDS": "10",
        # The failing run's in-doubt events make it ask for a decision (flows/decisions.py): nobody answers here.
        "BRAZE_MIGRATE_DECISION_TIMEOUT": "2",
    }
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    started = time.monotonic()
    with serving(prefect_api, env, log, DEPLOYMENTS):
        yield time.monotonic() - started


def trigger(name: str, **parameters):
    """Start a run through the API and wait for its final state."""
    run = run_deployment(name, parameters=parameters, timeout=RUN_TIMEOUT_S, poll_interval=0.5)
    assert run.state is not None and run.state.is_final(), f"{name} did not finish: {run.state}"
    return run


def artifacts_of(client, run) -> dict[str, list]:
    """The run's artifacts by key, oldest first."""
    found = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id={"any_": [run.id]}))
    out: dict[str, list] = {}
    for a in sorted(found, key=lambda a: a.created):
        out.setdefault(a.key, []).append(a)
    return out


def data_of(artifact):
    if artifact.type == "table" and isinstance(artifact.data, str):
        return json.loads(artifact.data)
    return artifact.data


def logs_of(client, run) -> list[str]:
    """Every log line of the run (flow and tasks), once the engine's last line has arrived."""

    def read() -> list[str]:
        lines, offset = [], 0
        while True:
            page = client.read_logs(LogFilter(flow_run_id={"any_": [run.id]}), limit=200, offset=offset)
            lines += [log.message for log in page]
            if len(page) < 200:
                return lines
            offset += 200

    wait_for(lambda: any("Finished in state" in line for line in read()), 60, f"logs of {run.name}")
    return read()


def ledger_summary(state: Path, kind: str) -> dict:
    ledger = Ledger(state / "ledger.sqlite")
    try:
        return next(r.summary for r in ledger.runs(limit=20) if r.kind == kind and r.summary)
    finally:
        ledger.close()


def personal_values() -> set[str]:
    """Every email, phone and push token of the sample exports, as text."""
    values: set[str] = set()
    for day in (DAY1, DAY2):
        for ds in scan_folder(day).values():
            columns = [c for c in ds.frame.collect_schema().names() if c in PERSONAL_COLUMNS]
            if columns:
                frame = ds.frame.select(pl.col(c).cast(pl.String) for c in columns).collect()
                texts = (v.strip() for c in columns for v in frame[c].drop_nulls().to_list())
                values |= {v for v in texts if len(v) >= 6}
    return values


def check_load(client, run, kind: str, state: Path) -> dict:
    """Progress reached 100 %, the buckets table is the ledger's, the report says what to do."""
    arts = artifacts_of(client, run)
    assert {f"{kind}-progress", f"{kind}-buckets", f"{kind}-report"} <= arts.keys(), arts.keys()
    assert arts[f"{kind}-progress"][-1].data == pytest.approx(100.0)

    summary = ledger_summary(state, kind)
    table = data_of(arts[f"{kind}-buckets"][-1])
    by_dataset = {row.pop("dataset"): row for row in table}
    total = by_dataset.pop("total")
    assert by_dataset == {name: {k: b[k] for k in total} for name, b in summary["datasets"].items()}
    for name, row in by_dataset.items():
        assert row["read"] == row["acknowledged"] + row["rejected"] + row["unchanged"] + row["pending"], name
    assert total == {k: sum(row[k] for row in by_dataset.values()) for k in total}

    report = arts[f"{kind}-report"][-1].data
    assert summary["run_id"] in report and "## What to do" in report
    assert f"| requests | {summary['requests']} " in report
    if summary["rejects"]:
        assert "**Warning:**" in report and summary["rejects_file"] in report
    return summary


def test_serve_builds_the_deployments_of_prefect_yaml():
    from flows.serve import deployments

    built = {d.name: d for d in deployments()}
    assert set(built) == {"nightly-sync", "backfill", "verify"}
    nightly = built["nightly-sync"]
    assert nightly.flow_name == "sync" and nightly.entrypoint == "flows/load.py:sync"
    (schedule,) = nightly.schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone) == ("30 2 * * *", "Europe/Berlin")
    # No Prefect concurrency limit (a paused run would lose its slot and crash): the state-folder lock refuses.
    assert nightly.concurrency_limit is None and built["backfill"].concurrency_limit is None
    assert not {"source", "state"} & nightly.parameters.keys()  # to be configured: nothing defaults into the checkout
    assert not schedule.active and "Europe/Berlin" in nightly.description
    assert built["backfill"].schedules == [] and "source" not in built["backfill"].parameters
    assert built["verify"].entrypoint == "flows/verify.py:verify"
    assert built["verify"].parameters["verify"] == {"sample": 200} and "state" not in built["verify"].parameters
    assert not any("key" in k.lower() for d in built.values() for k in d.parameters)


def test_backfill_sync_verify_through_the_prefect_api(served, prefect_api, sandbox_server, tmp_path):
    sandbox_server.reset()
    sandbox_server.set_faults(fail_rate=0.0, applied_then_fail_rate=0.0, reset_rate=0.0, storm_rate=0.0)
    state = tmp_path / "state"
    runs, timings = [], {"server_startup_s": prefect_api.startup_s, "serve_startup_s": served}
    with get_client(sync_client=True) as client:
        started = time.monotonic()
        backfill = trigger("backfill/backfill", source=str(DAY1), state=str(state))
        timings["backfill_s"] = time.monotonic() - started
        runs.append(backfill)
        assert backfill.state.type == StateType.COMPLETED, backfill.state.message
        day1 = check_load(client, backfill, "backfill", state)
        # kind, logical date, state folder, run id
        assert re.fullmatch(rf"backfill-\d{{4}}-\d\d-\d\d-state-{day1['run_id']}", backfill.name), backfill.name
        assert day1["status"] == "completed" and day1["rejects"] > 0  # the samples plant bad rows
        assert sandbox_server.stats()["profiles"] > 0

        started = time.monotonic()
        sync = trigger("sync/nightly-sync", source=str(DAY2), state=str(state))
        timings["sync_s"] = time.monotonic() - started
        runs.append(sync)
        assert sync.state.type == StateType.COMPLETED, sync.state.message
        day2 = check_load(client, sync, "sync", state)
        assert day2["run_id"] != day1["run_id"]
        assert day2["data_points"]["sent"] < day2["data_points"]["full_resend"]  # deltas only

        # One profile altered behind the pipeline's back: verify names that user, field and kind only.
        sampled = verify_logic.build_expectations(str(DAY2), state, verify_logic.DEFAULT_SAMPLE).users
        altered = next(u.external_id for u in sampled if u.attributes.get("loyalty_tier"))
        sandbox_server.patch_user(altered, custom_attributes={"loyalty_tier": ALTERED_VALUE})
        started = time.monotonic()
        verify = trigger("verify/verify", source=str(DAY2), state=str(state))
        timings["verify_s"] = time.monotonic() - started
        runs.append(verify)
        assert verify.state.type == StateType.FAILED
        assert verify.state.message.startswith("1 of 200 sampled users differ from the export")
        arts = artifacts_of(client, verify)
        assert data_of(arts["verify-mismatches"][-1]) == [
            {"external_id": altered, "field": "loyalty_tier", "kind": "value_different"}]
        assert "| 200 | 199 | 1 |" in arts["verify-summary"][-1].data
        assert not any("cannot be resolved into an exception" in line for line in logs_of(client, verify))

        sandbox_server.set_faults(fail_rate=1.0)
        started = time.monotonic()
        try:
            failing = trigger("backfill/backfill", source=str(DAY1), state=str(tmp_path / "state-failing"))
        finally:
            sandbox_server.set_faults(fail_rate=0.0)
        timings["failing_backfill_s"] = time.monotonic() - started
        runs.append(failing)
        assert failing.state.type == StateType.FAILED
        resume = f"braze-migrate backfill {DAY1} --state {tmp_path / 'state-failing'}"
        assert resume in failing.state.message
        report = artifacts_of(client, failing)["backfill-report"][-1].data
        assert resume in report and "rows are pending" in report

        shown = [run.name for run in runs] + [run.state.message or "" for run in runs]
        for run in runs:
            shown += logs_of(client, run)
            for artifact in (a for group in artifacts_of(client, run).values() for a in group):
                shown += [json.dumps(artifact.data), artifact.description or ""]
    text = "\n".join(shown)
    personal = personal_values()
    assert len(personal) > 300 and any("@" in v for v in personal)  # the scan has something to find
    assert "Beginning flow run" in text and "backfill run " in text  # and logs to look in
    leaked = sorted(v for v in personal | {API_KEY, ALTERED_VALUE} if v in text)
    assert not leaked, f"{len(leaked)} personal or secret values in artifacts, logs or states"
    print("e2e timings:", json.dumps({k: round(v, 1) for k, v in timings.items()}))


def test_progress_artifact_mid_run_and_a_plan_task_that_takes_its_time(served, prefect_api, sandbox_server,
                                                                      tmp_path):
    """A sync of a non-trivial export (after a first backfill, so it is planned by the `plan` task, not while
    loading): while it loads, its progress artifact says batches and objects done of planned, requests/s,
    429s, retries, in doubt and an ETA; the `plan` task lasted as long as planning took."""
    from prefect.client.schemas.filters import FlowRunFilter

    from tests.exports import bulk_export, write_export

    sandbox_server.reset()
    state = tmp_path / "state"
    first = trigger("backfill/backfill", source=str(write_export(tmp_path / "small", "parquet")), state=str(state))
    assert first.state.type == StateType.COMPLETED, first.state.message
    # 2,000 users with a purchase and an event each: 80 requests, sent at 20/s (4 s or more of loading).
    big = bulk_export(tmp_path / "big", 2000)
    run = run_deployment("sync/nightly-sync", timeout=0, parameters={
        "source": str(big), "state": str(state), "requests": {"rate_limit": "20/1s"}, "rows": {"users_per_partition": 500}})
    seen = None
    with get_client(sync_client=True) as client:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while time.monotonic() < deadline:
            current = client.read_flow_run(run.id)
            if current.state is not None and current.state.is_final():
                break
            progress = artifacts_of(client, current).get("sync-progress")
            text = progress[-1].description if progress else ""
            if current.state.is_running() and "| ETA | " in text and "| ETA | done" not in text:
                seen = text
                break
            time.sleep(0.3)
        assert seen is not None, "no progress artifact with an ETA was seen while the sync ran"
        assert re.search(r"\| batches \| \d+ of 80 acknowledged", seen), seen
        assert re.search(r"\| objects \| [\d,]+ of 6,000 \|", seen), seen
        assert re.search(r"\| rate \| [\d.]+ batches/s, [\d.]+ requests/s \|", seen), seen
        for row in ("rate limited (429)", "retries", "in-doubt batches"):
            assert re.search(rf"\| {re.escape(row)} \| \d+ \|", seen), (row, seen)
        assert re.search(r"\| ETA \| \d+:\d\d", seen), seen

        wait_for(lambda: client.read_flow_run(run.id).state.is_final(), RUN_TIMEOUT_S, "the sync")
        done = client.read_flow_run(run.id)
        assert done.state.type == StateType.COMPLETED, done.state.message
        arts = artifacts_of(client, done)
        assert arts["sync-progress"][-1].data == pytest.approx(100.0)
        assert arts["sync-planning"][-1].data == pytest.approx(100.0)
        assert "| planning | " in arts["sync-planning"][-1].description
        tasks = {t.name.rsplit("-", 1)[0]: t for t in client.read_task_runs(
            flow_run_filter=FlowRunFilter(id={"any_": [run.id]}))}
        plan = tasks["plan"]
        assert plan.total_run_time.total_seconds() > 0.1, plan.total_run_time
        logs = logs_of(client, done)
    first_lines = [line for line in logs if line.startswith("sync of ")]
    assert first_lines and str(big) in first_lines[0] and "rate limit 20/1s" in first_lines[0]
    assert any("80 batches (6,000 objects)" in line for line in logs), logs
