"""Issue #21's cases through deployment runs on a real Prefect server (docs/trials/21-prefect.md): the served
`sync`/`backfill` deployments against the sandbox over HTTP, the alert automations to a loopback webhook. Each
test sets up its nights with the CLI (inline, fast) and takes the step under trial as a deployment run, then
checks the run's final state and one-line message, its report and logs, the alert, and the sandbox's profiles
against what the exports say: nothing lost, doubled or brought back.

Nothing depends on wall-clock speed: every wait is a bounded poll.
"""

from __future__ import annotations

import json
import subprocess

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, LogFilter
from prefect.deployments import run_deployment
from prefect.flow_runs import resume_flow_run

from automations.apply import apply, load_specs, webhook_block
from tests.conftest import API_KEY
from tests.conftest_prefect import prefect_api, prefect_server, serving, wait_for  # noqa: F401 - fixtures
from tests.nights import event, known, purchase, write_night
from tests.test_prefect_decisions import Receiver

RUN_TIMEOUT_S = 300  # bounds, not expectations
USERS = {f"u{i:03d}": {"tier": "gold" if i % 2 else "silver", "city": "Oslo"} for i in range(30)}

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def receiver(prefect_api):  # noqa: F811 - the imported fixture
    r = Receiver()
    apply(load_specs(), webhook_block(r.url))
    yield r
    r.server.shutdown()


@pytest.fixture(scope="module")
def served(prefect_api, sandbox_server, tmp_path_factory):  # noqa: F811 - the imported fixture
    env = {"BRAZE_REST_ENDPOINT": sandbox_server.url, "BRAZE_API_KEY": API_KEY}
    log = tmp_path_factory.mktemp("serve-between") / "serve.log"
    with serving(prefect_api, env, log, ["sync/nightly-sync", "backfill/backfill"]):
        yield log


def cli(*args) -> int:
    """`braze-migrate ARGS` inline (the setup of a trial, not under trial)."""
    from braze_migrate.cli.main import main

    return main([str(a) for a in args])


def deploy(name: str, source, state, timeout: float = RUN_TIMEOUT_S, **parameters):
    """A deployment run of `name` on `source` and `state`, until it ends (timeout=0: at once)."""
    return run_deployment(name, timeout=timeout, poll_interval=0.5,
                          parameters={"source": str(source), "state": str(state), **parameters})


def logs(run) -> list[str]:
    """The run's log lines, once its last one (the flow's final state, with its message) has arrived."""
    last = f"Finished in state {run.state.name}("

    def read() -> list[str]:
        with get_client(sync_client=True) as client:
            return [line.message for line in client.read_logs(LogFilter(flow_run_id={"any_": [run.id]}), limit=200)]

    wait_for(lambda: any(line.startswith(last) and (run.state.message or "") in line for line in read()), 60,
             f"logs of {run.name}")
    return read()


def artifact(run, key: str) -> str:
    with get_client(sync_client=True) as client:
        found = [a for a in client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id={"any_": [run.id]}))
                 if a.key == key]
    return max(found, key=lambda a: a.created).data if found else ""  # the newest version of the key


def final(run_id):
    found = []

    def check() -> bool:
        with get_client(sync_client=True) as client:
            found[:] = [client.read_flow_run(run_id)]
        return found[0].state is not None and found[0].state.is_final()

    wait_for(check, RUN_TIMEOUT_S, f"flow run {run_id} to finish")
    return found[0]


def paused(run_id):
    found = []

    def check() -> bool:
        with get_client(sync_client=True) as client:
            found[:] = [client.read_flow_run(run_id)]
        return found[0].state is not None and found[0].state.is_paused()

    wait_for(check, RUN_TIMEOUT_S, f"flow run {run_id} to pause")
    return found[0]


def counts(sandbox) -> tuple[int, int, int]:
    """(profiles, events, purchases) in the sandbox."""
    profiles = known(sandbox)
    return (len(profiles), sum(len(p["events"]) for p in profiles.values()),
            sum(len(p["purchases"]) for p in profiles.values()))


def no_traceback(run, served_log) -> None:
    lines = logs(run)
    text = "\n".join(lines) + served_log.read_text(errors="replace")
    assert "Traceback" not in text and "NoneType: None" not in text and "unexpected exception" not in text


def test_case1_repair_refuses_a_vanished_plan_file_and_the_next_deployment_sync_resends_nothing(
        served, braze_env, tmp_path):
    state, sandbox = tmp_path / "state", braze_env
    assert cli("backfill", write_night(tmp_path / "n1", USERS, [event(i, f"u{i:03d}") for i in range(10)]),
               "--state", state, "--no-prefect") == 0
    backfill = set((state / "runs").iterdir())
    n2 = write_night(tmp_path / "n2", USERS, [event(i, f"u{i % 30:03d}") for i in range(40)],
                     [purchase(i, f"u{i % 30:03d}") for i in range(20)])
    assert cli("sync", n2, "--state", state, "--no-prefect") == 0
    (second,) = set((state / "runs").iterdir()) - backfill  # not the newest name: one second's runs sort at random
    max((second / "plan" / "objects").glob("*.parquet")).unlink()
    assert cli("repair", "--state", state) == 5  # names the file, rebuilds nothing
    n3 = write_night(tmp_path / "n3", USERS, [event(i, f"u{i % 30:03d}") for i in range(45)],
                     [purchase(i, f"u{i % 30:03d}") for i in range(22)])
    run = deploy("sync/nightly-sync", n3, state)
    assert run.state.is_completed() and run.state.message == "completed", run.state
    assert counts(sandbox) == (30, 45, 22)  # each occurrence once: 5 new events, 2 new purchases sent
    assert "| total | 97 | 7 | 0 | 90 | 0 | 0 |" in artifact(run, "sync-report")


def test_case2_applied_then_5xx_a_deployment_run_advises_settle_first_in_its_message_alert_and_report(
        served, receiver, braze_env, tmp_path):
    state, sandbox = tmp_path / "state", braze_env
    assert cli("backfill", write_night(tmp_path / "n1", USERS), "--state", state, "--no-prefect") == 0
    n2 = write_night(tmp_path / "n2", USERS, [event(i, f"u{i % 30:03d}") for i in range(30)])
    sandbox.set_faults(applied_then_fail_rate=1.0)
    try:
        run = deploy("sync/nightly-sync", n2, state, retries={"max_attempts": 1},
                     guards={"decision_timeout": 2})  # nobody answers
    finally:
        sandbox.set_faults(applied_then_fail_rate=0.0)
    assert run.state.is_failed(), run.state
    assert counts(sandbox) == (30, 30, 0)  # Braze applied them: already there once
    run_id = run.name.rsplit("-", 2)[-2] + "-" + run.name.rsplit("-", 1)[-1]
    settle = f"braze-migrate settle {run_id} --check --state {state}"
    resume = f"braze-migrate sync {n2} --state {state}"
    assert run.state.message == f"incomplete: 30 rows pending; next: {settle}, then {resume}"
    alert = receiver.wait_for(f"{run.name} ended Failed")
    assert run.state.message in alert["body"]
    report = artifact(run, "sync-report")
    assert f"1. `{settle}`" in report and f"2. `{resume}`" in report
    for text in [run.state.message, alert["body"], report, *logs(run)]:
        assert "--in-doubt resend" not in text
    # Following the advice in order, the resume as a deployment run: every event in Braze exactly once.
    assert cli("settle", run_id, "--check", "--state", state) == 0
    again = deploy("sync/nightly-sync", n2, state)
    assert again.state.is_completed(), again.state
    assert counts(sandbox) == (30, 30, 0)


def test_case2_a_plain_resume_before_settle_still_advises_the_settle(served, braze_env, tmp_path):
    """The message of the failed run was followed literally before it named the settle: the next run holds the
    same events pending and must still advise settling the earlier run, not itself 'nothing is in doubt'."""
    state, sandbox = tmp_path / "state", braze_env
    assert cli("backfill", write_night(tmp_path / "n1", USERS), "--state", state, "--no-prefect") == 0
    backfill = {p.name for p in (state / "runs").iterdir()}
    n2 = write_night(tmp_path / "n2", USERS, [event(i, f"u{i % 30:03d}") for i in range(30)])
    sandbox.set_faults(applied_then_fail_rate=1.0)
    try:
        assert cli("sync", n2, "--state", state, "--no-prefect", "--max-attempts", "1") == 1
    finally:
        sandbox.set_faults(applied_then_fail_rate=0.0)
    # the sync's run (not the newest name: two runs of one second sort by their random suffix)
    (first,) = {p.name for p in (state / "runs").iterdir()} - backfill
    run = deploy("sync/nightly-sync", n2, state)
    assert run.state.is_failed(), run.state
    assert run.state.message.startswith(f"incomplete: 30 rows pending; next: braze-migrate settle {first} --check")
    assert "nothing is in doubt" not in artifact(run, "sync-report")
    assert counts(sandbox) == (30, 30, 0)


def test_case3_deleted_users_stay_deleted_through_deployment_nights(served, braze_env, tmp_path):
    state, sandbox = tmp_path / "state", braze_env
    assert cli("backfill", write_night(tmp_path / "n1", USERS, [event(1, "u001")]), "--state", state,
               "--no-prefect") == 0
    assert cli("sync", write_night(tmp_path / "n2", USERS, deletes=["u001", "u002"]), "--state", state,
               "--no-prefect") == 0
    n3 = write_night(tmp_path / "n3", {**USERS, "u001": {"tier": "platinum"}},
                     [event(1, "u001"), event(2, "u002"), event(3, "u003")], [purchase(1, "u001")], deletes=["u004"])
    run = deploy("sync/nightly-sync", n3, state)
    assert run.state.is_completed(), run.state
    assert set(known(sandbox)) == set(USERS) - {"u001", "u002", "u004"}
    assert any("5 rejected rows or cells" in line for line in logs(run))


def test_case4_held_deletes_report_the_parameter_that_accepts_them_and_a_quiet_night_is_not_held(
        served, braze_env, tmp_path):
    users = {f"u{i:03d}": {"city": "Oslo"} for i in range(300)}
    state, sandbox = tmp_path / "state", braze_env
    assert cli("backfill", write_night(tmp_path / "n1", users), "--state", state, "--no-prefect") == 0
    n2 = write_night(tmp_path / "n2", users, deletes=[f"u{i:03d}" for i in range(120)])
    held = deploy("sync/nightly-sync", n2, state)
    assert held.state.is_failed() and held.state.message.startswith("deletes held: 120 users"), held.state
    report = artifact(held, "sync-report")
    command = (f"prefect deployment run 'sync/nightly-sync' -p source={n2} -p state={state} "
               "-p 'deletes={\"allow_mass_delete\": true}'")
    assert f"`{command}`" in report and f"- {held.state.message}" in report
    assert len(known(sandbox)) == 300
    accepted = deploy("sync/nightly-sync", n2, state, deletes={"allow_mass_delete": True})  # as the report says
    assert accepted.state.is_completed(), accepted.state
    assert len(known(sandbox)) == 180
    quiet = deploy("sync/nightly-sync", write_night(tmp_path / "n3", users), state)
    assert quiet.state.is_completed(), quiet.state
    assert len(known(sandbox)) == 180


def test_case5_renamed_column_pauses_and_accepting_the_form_sends_the_held_plan(served, receiver, braze_env,
                                                                                 tmp_path):
    state, sandbox = tmp_path / "state", braze_env
    assert cli("backfill", write_night(tmp_path / "n1", USERS), "--state", state, "--no-prefect") == 0
    renamed = {eid: {"Tier": a["tier"], "city": a["city"]} for eid, a in USERS.items()}
    run = deploy("sync/nightly-sync", write_night(tmp_path / "n2", renamed), state, timeout=0,
                 guards={"decision_timeout": RUN_TIMEOUT_S})
    waiting = paused(run.id)
    assert "'tier'" in waiting.state.message and "'Tier'" in waiting.state.message
    assert "--accept column:users.tier" in waiting.state.message
    receiver.wait_for(f"{waiting.name} is held")
    assert cli("repair", "--state", state) == 2  # the paused run holds the state folder
    assert "Tier" not in known(sandbox)["u001"]["custom_attributes"]
    resume_flow_run(run.id, run_input={"decision": "accept", "answered_by": "trial"})
    done = final(run.id)
    assert done.state.is_completed(), done.state
    assert known(sandbox)["u001"]["custom_attributes"] == {"tier": "gold", "Tier": "gold", "city": "Oslo"}
    assert "**Accepted by trial at " in artifact(done, "guards")


def test_case6_unwritable_snapshot_ends_failed_with_one_line_before_sending_and_the_same_run_resumes(
        served, braze_env, tmp_path):
    """EPERM at the OS (an immutable folder: tests run as root, so a chmod would not deny)."""
    state, sandbox = tmp_path / "state", braze_env
    (state / "snapshot").mkdir(parents=True)
    if subprocess.run(["chattr", "+i", str(state / "snapshot")], capture_output=True, check=False).returncode:
        pytest.skip("chattr +i is not available here")
    night = write_night(tmp_path / "n1", USERS, [event(i, f"u{i % 30:03d}") for i in range(60)])
    try:
        run = deploy("backfill/backfill", night, state)
    finally:
        subprocess.run(["chattr", "-i", str(state / "snapshot")], check=True)
    assert run.state.is_failed() and run.state.message.startswith(f"cannot write {state / 'snapshot'}"), run.state
    assert "a new run of the deployment with the same parameters (or Retry) then resumes" in run.state.message
    assert "the same command" not in run.state.message and "\n" not in run.state.message
    assert [line for line in logs(run) if line == run.state.message] == [run.state.message]  # logged once
    assert known(sandbox) == {}
    again = deploy("backfill/backfill", night, state)
    assert again.state.is_completed(), again.state
    assert counts(sandbox) == (30, 60, 0)


def test_case7_a_dangling_users_symlink_fails_the_deployment_run_with_one_line(served, braze_env, tmp_path):
    night = write_night(tmp_path / "n1", users=None, events=[event(1, "u001")])
    link = night / "users.csv"
    link.symlink_to(tmp_path / "moved" / "users.csv")
    run = deploy("backfill/backfill", night, tmp_path / "state")
    assert run.state.is_failed() and run.state.message.startswith(f"{link}: this symbolic link points to"), run.state
    assert known(braze_env) == {}


def test_case8_a_damaged_state_ends_failed_with_one_line_and_no_stray_nonetype(served, braze_env, tmp_path):
    state = tmp_path / "state"
    night = write_night(tmp_path / "n1", USERS)
    assert cli("backfill", night, "--state", state, "--no-prefect") == 0
    min((state / "snapshot" / "users").glob("part-*.parquet")).unlink()
    run = deploy("sync/nightly-sync", write_night(tmp_path / "n2", {**USERS, "u001": {"tier": "x"}}), state)
    assert run.state.is_failed() and run.state.message.startswith(f"the state folder {state} is damaged"), run.state
    assert f"braze-migrate repair --state {state}" in run.state.message
    no_traceback(run, served)
    assert json.dumps(run.state.message).count("\\n") == 0


def test_exit3_a_deployment_run_cancelled_while_loading_stops_cleanly_and_the_next_run_resumes(
        served, braze_env, tmp_path):
    """Exit 3's equivalent: cancelled from Prefect (`prefect flow-run cancel`) while its batches go out, the run
    ends Cancelled with its summary committed as interrupted and no traceback in any log; the next deployment
    run sends what was left, each occurrence once."""
    from prefect.states import Cancelling

    state, sandbox = tmp_path / "state", braze_env
    night = write_night(tmp_path / "n1", USERS, [event(i, f"u{i % 30:03d}") for i in range(60)])
    sandbox.set_faults(latency_ms=200)  # 90 batches of one object, one at a time: long enough to cancel
    try:
        run = deploy("backfill/backfill", night, state, timeout=0, requests={"batch_size": 1, "concurrency": 1})
        wait_for(lambda: len(known(sandbox)) >= 3, RUN_TIMEOUT_S, "the first batches acknowledged")
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(run.id, Cancelling())
        done = final(run.id)
    finally:
        sandbox.set_faults(latency_ms=0)
    assert done.state.is_cancelled(), done.state
    assert counts(sandbox) < (30, 60, 0)
    again = deploy("backfill/backfill", night, state, requests={"batch_size": 1, "concurrency": 1})
    assert again.state.is_completed(), again.state
    assert counts(sandbox) == (30, 60, 0)
    text = served.read_text(errors="replace")
    assert "interrupted:" in text and "Finished in state Cancelling()" in text  # it did stop mid-load
    assert "Traceback" not in text and "unexpected exception" not in text and "NoneType: None" not in text
