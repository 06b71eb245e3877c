"""The paths between features, each tried as a new user would, against the sandbox over HTTP: nothing is lost,
doubled, corrupted or brought back between repair, settle, deletes, the guards and the state folder's failures.
One test (or more) per case of the issue they come from, each failing on the code before it."""

from __future__ import annotations

import errno
import json
import os
import resource
import shutil

import polars as pl
import pytest

from braze_migrate.summary import RunSummary
from tests.nights import cli, env, event, known, last_line, purchase, run, write_night

USERS = {f"u{i:03d}": {"tier": "gold" if i % 2 else "silver", "city": "Oslo"} for i in range(30)}


def _events(sandbox) -> int:
    return sum(len(p["events"]) for p in known(sandbox).values())


def _purchases(sandbox) -> int:
    return sum(len(p["purchases"]) for p in known(sandbox).values())


# --- case 1: repair proves its inputs and takes the run lock ------------------------------------------------

@pytest.fixture
def two_nights(sandbox, tmp_path):
    """A backfill and a sync with new events and purchases, both committed."""
    e, state = env(sandbox, tmp_path), tmp_path / "state"
    assert run("backfill", write_night(tmp_path / "n1", USERS, [event(i, f"u{i:03d}") for i in range(10)]),
               state, e)[0] == 0
    night2 = write_night(tmp_path / "n2", USERS, [event(i, f"u{i % 30:03d}") for i in range(40)],
                         [purchase(i, f"u{i % 30:03d}") for i in range(20)])
    code, summary, _ = run("sync", night2, state, e)
    assert code == 0
    return e, state, summary["run_id"], night2


@pytest.mark.parametrize("damage", ["objects_file", "objects_folder", "users_next_of_first_run", "changed"])
def test_repair_refuses_when_a_replayed_plan_file_is_gone_or_changed(sandbox, tmp_path, two_nights, damage):
    e, state, run2, night2 = two_nights
    runs = sorted(p.name for p in (state / "runs").iterdir())
    objects = state / "runs" / run2 / "plan" / "objects"
    if damage == "objects_file":
        victim = max(objects.glob("*.parquet"))
        victim.unlink()
    elif damage == "objects_folder":
        victim = objects
        shutil.rmtree(objects)
    elif damage == "users_next_of_first_run":
        victim = state / "runs" / runs[0] / "plan" / "users_next"
        shutil.rmtree(victim)
    else:
        victim = max(objects.glob("*.parquet"))
        frame = pl.read_parquet(victim)
        frame.head(max(0, frame.height - 1)).write_parquet(victim)
    snapshot_before = sorted((p.relative_to(state), p.read_bytes()) for p in (state / "snapshot").rglob("*")
                             if p.is_file())
    done = cli("repair", "--state", state, env=e)
    assert done.returncode == 5, done.stdout + done.stderr
    line = last_line(done.stderr)
    assert line.startswith("braze-migrate: error: ") and str(victim) in line and len(done.stderr.strip().splitlines()) == 1
    assert sorted((p.relative_to(state), p.read_bytes()) for p in (state / "snapshot").rglob("*")
                  if p.is_file()) == snapshot_before  # nothing rebuilt
    assert not list(state.glob("snapshot.damaged-*"))
    sent = (_events(sandbox), _purchases(sandbox))
    assert run("sync", night2, state, e)[0] == 0  # the snapshot was left as it was: nothing is resent
    assert (_events(sandbox), _purchases(sandbox)) == sent == (40, 20)


def test_repair_takes_the_run_lock(sandbox, tmp_path, two_nights):
    from connectors.state.lock import run_lock

    e, state, _, _ = two_nights
    with run_lock(state, "sync n3"):
        done = cli("repair", "--state", state, env=e)
    assert done.returncode == 2 and "sync n3" in last_line(done.stderr)
    assert not list(state.glob("snapshot.damaged-*"))


@pytest.mark.parametrize("command", [["repair"], ["settle", "20260101T000000-abcdef", "--check"],
                                     ["undelete", "u001"]])
def test_a_mistyped_state_folder_is_an_error_and_is_not_created(sandbox, tmp_path, command):
    typo = tmp_path / "stat"
    done = cli(*command, "--state", typo, env=env(sandbox, tmp_path))
    assert done.returncode == 2 and "is not a state folder" in last_line(done.stderr)
    assert not typo.exists()


# --- case 2: one decision table; never `--in-doubt resend` after a run -----------------------------------------

def test_applied_then_5xx_advises_settle_check_then_the_plain_resume_and_following_it_sends_each_event_once(
        sandbox, tmp_path):
    e, state = env(sandbox, tmp_path), tmp_path / "state"
    assert run("backfill", write_night(tmp_path / "n1", USERS), state, e)[0] == 0
    night2 = write_night(tmp_path / "n2", USERS, [event(i, f"u{i % 30:03d}") for i in range(30)])
    sandbox.set_faults(applied_then_fail_rate=1.0)
    code, summary, err = run("sync", night2, state, e, "--max-attempts", "1")
    sandbox.set_faults(applied_then_fail_rate=0.0)
    assert code == 1 and summary["in_doubt"]
    assert "--in-doubt resend" not in json.dumps(summary) + err
    first, second = summary["advice"]
    assert first["command"] == f"braze-migrate settle {summary['run_id']} --check --state {state}"
    assert second["command"] == f"braze-migrate sync {night2} --state {state}"
    assert last_line(err).endswith(f"next: {first['command']}")
    # Following the advice literally: every event is in Braze exactly once.
    for step in summary["advice"]:
        args = step["command"].split()[1:]
        done = cli(*args, *(["--no-prefect"] if args[0] in ("sync", "backfill") else []), env=e)
        assert done.returncode == 0, done.stdout + done.stderr
    assert _events(sandbox) == 30


def test_a_plain_resume_before_settle_still_advises_settling_the_earlier_run(sandbox, tmp_path):
    """Found by the Prefect trial (docs/trials/21-prefect.md, case 2): the failed run's state message named the
    plain resume; the run it started held the same events as pending with no batch in doubt of its own, and
    advised the plain resume again "(nothing is in doubt: no duplicate)", forever: settle was never advised."""
    e, state = env(sandbox, tmp_path), tmp_path / "state"
    assert run("backfill", write_night(tmp_path / "n1", USERS), state, e)[0] == 0
    night2 = write_night(tmp_path / "n2", USERS, [event(i, f"u{i % 30:03d}") for i in range(30)])
    sandbox.set_faults(applied_then_fail_rate=1.0)
    code, first, _ = run("sync", night2, state, e, "--max-attempts", "1")
    sandbox.set_faults(applied_then_fail_rate=0.0)
    assert code == 1 and first["in_doubt"]
    code, second, err = run("sync", night2, state, e)  # the plain resume, settle skipped
    assert code == 1 and second["datasets"]["events"]["pending"] == 30 and not second["in_doubt"]
    settle = f"braze-migrate settle {first['run_id']} --check --state {state}"
    assert [s["command"] for s in second["advice"]] == [settle, f"braze-migrate sync {night2} --state {state}"]
    assert "30 events and purchases of run " + first["run_id"] in second["advice"][0]["why"]
    assert "nothing is in doubt" not in json.dumps(second["advice"]) and "--in-doubt resend" not in err
    assert last_line(err).endswith(f"next: {settle}")
    for step in second["advice"]:  # following it: every event in Braze exactly once, nothing left pending
        args = step["command"].split()[1:]
        done = cli(*args, *(["--no-prefect"] if args[0] in ("sync", "backfill") else []), env=e)
        assert done.returncode == 0, done.stdout + done.stderr
    assert _events(sandbox) == 30


def test_no_in_doubt_batch_never_advises_a_resend(sandbox, tmp_path):
    """Attribute-only batches answered 5xx are pending, none in doubt: the advice is the plain resume."""
    e, state = env(sandbox, tmp_path), tmp_path / "state"
    sandbox.set_faults(fail_rate=1.0)
    code, summary, err = run("backfill", write_night(tmp_path / "n1", USERS), state, e, "--max-attempts", "1")
    sandbox.set_faults(fail_rate=0.0)
    assert code == 1 and summary["datasets"]["users"]["pending"] == 30
    assert all(b["events"] == b["purchases"] == 0 for b in summary["in_doubt"])  # attributes: resent, idempotent
    assert "--in-doubt resend" not in json.dumps(summary) + err
    assert [s["command"] for s in summary["advice"]] == [f"braze-migrate backfill {tmp_path / 'n1'} --state {state}"]
    assert last_line(err) == f"braze-migrate: incomplete: 30 rows pending; next: {summary['advice'][0]['command']}"


def test_settle_names_the_batches_it_could_not_decide_and_the_duplicates_a_resend_may_cause():
    from braze_migrate.run.advice import after_settle

    steps = after_settle("R1", "/s", [3, 5], {3: (10, 2), 5: (4, 0), 7: (9, 9)})
    assert [s.command for s in steps] == ["braze-migrate settle R1 --delivered 3 5 --state /s",
                                          "braze-migrate settle R1 --resend 3 5 --state /s"]
    assert "up to 14 events and 2 purchases become duplicates" in steps[1].why
    assert after_settle("R1", "/s", [], {3: (10, 2)}) == []


# --- case 3: erasure is permanent ----------------------------------------------------------------------------

def test_deleted_users_stay_deleted_when_a_later_night_lists_other_ids(sandbox, tmp_path):
    e, state = env(sandbox, tmp_path), tmp_path / "state"
    assert run("backfill", write_night(tmp_path / "n1", USERS, [event(1, "u001")]), state, e)[0] == 0
    assert run("sync", write_night(tmp_path / "n2", USERS, deletes=["u001", "u002"]), state, e)[0] == 0
    assert "u001" not in known(sandbox) and "u002" not in known(sandbox)
    # Night 3 still exports them (with a new event and purchase), and its user_deletes lists someone else.
    night3 = write_night(tmp_path / "n3", {**USERS, "u001": {"tier": "platinum"}},
                         [event(1, "u001"), event(2, "u002"), event(3, "u003")], [purchase(1, "u001")],
                         deletes=["u004"])
    code, summary, _ = run("sync", night3, state, e)
    assert code == 0
    assert set(known(sandbox)) == set(USERS) - {"u001", "u002", "u004"}
    users = summary["datasets"]["users"]
    assert users["rejected"] == 2 and summary["datasets"]["events"]["rejected"] == 2
    assert summary["datasets"]["purchases"]["rejected"] == 1
    rejects = pl.read_csv(summary["rejects_file"])
    assert set(rejects.filter(pl.col("dataset") == "users")["key"]) == {"u001", "u002"}
    assert rejects["reason"].str.contains("erasure is permanent").all()
    assert summary["erased"] == 5  # so the report does not ask to fix them in the warehouse
    from flows.artifacts import report_markdown

    report = report_markdown(RunSummary.coerce(summary))
    assert "fix them in the warehouse" not in report and "5 rows belong to users deleted" in report
    # Night 4 without user_deletes at all: still gone.
    assert run("sync", write_night(tmp_path / "n4", USERS), state, e)[0] == 0
    assert "u001" not in known(sandbox)
    # Only an explicit undelete lets them back, and it is logged.
    done = cli("undelete", "u001", "--state", state, env=e)
    assert done.returncode == 0 and "undeleted u001" in done.stdout
    code, summary, _ = run("sync", tmp_path / "n4", state, e)  # the very export the last run loaded
    assert code == 0 and not summary.get("unchanged_since")  # not "unchanged": the undelete changed the state
    assert "u001" in known(sandbox) and "u002" not in known(sandbox)
    from connectors.state.ledger import Ledger

    ledger = Ledger(state / "ledger.sqlite")
    try:
        assert [r["external_id"] for r in ledger.undelete_log()] == ["u001"]
    finally:
        ledger.close()


# --- case 4: deletes have their own guard, never the rows guard -------------------------------------------------

def test_a_quiet_night_after_many_deletes_is_not_held_by_the_rows_guard(sandbox, tmp_path):
    users = {f"u{i:03d}": {"city": "Oslo"} for i in range(300)}
    e, state = env(sandbox, tmp_path), tmp_path / "state"
    assert run("backfill", write_night(tmp_path / "n1", users), state, e)[0] == 0
    gone = [f"u{i:03d}" for i in range(120)]
    code, summary, _ = run("sync", write_night(tmp_path / "n2", users, deletes=gone), state, e,
                           "--delete-max-share", "0.5")
    assert code == 0 and len(summary["deletes"]["deleted_ids"]) == 120
    code, summary, err = run("sync", write_night(tmp_path / "n3", users, deletes=["u200"]), state, e)
    assert code == 0, err
    code, summary, err = run("sync", write_night(tmp_path / "n4", users), state, e)
    assert code == 0, err
    assert all(d["dataset"] != "user_deletes" for d in summary["guards"]["datasets"])


def test_a_held_delete_reports_what_was_held_and_the_deployment_parameter_that_accepts_it():
    """Found by the Prefect trial (case 4): the report of a deployment run whose deletes were held said nothing
    under "What was held" and told to accept it with `-p 'accept=[""]'`, which accepts nothing."""
    from braze_migrate.summary import RunSummary
    from flows.artifacts import report_markdown

    message = "deletes held: 120 users to delete (40% of the 300 acknowledged users) is over the guard"
    summary = RunSummary(run_id="R2", kind="sync", source="/x/n2", state="/s", status="held", message=message,
                         deletes={"held": True, "deleted_ids": [], "pending_ids": ["u1"]},
                         resume_command="braze-migrate sync /x/n2 --state /s --allow-mass-delete")
    report = report_markdown(summary, "sync/nightly-sync")
    assert f"- {message}" in report.split("## What was held")[1].split("##")[0]
    assert ("`prefect deployment run 'sync/nightly-sync' -p source=/x/n2 -p state=/s "
            "-p 'deletes={\"allow_mass_delete\": true}'`" in report) and '"accept"' not in report
    catalogs = summary.model_copy(update={
        "resume_command": "braze-migrate sync /x/n2 --state /s --catalog-deletes --allow-mass-delete"})
    assert ("-p 'catalogs={\"catalog_deletes\": true}' -p 'deletes={\"allow_mass_delete\": true}'`"
            in report_markdown(catalogs, "sync/nightly-sync"))


def test_held_guards_report_the_accept_parameter_in_its_section():
    """The flows take options in sections (docs/prefect.md, "Parameters"): the report's Prefect command gives
    `accept` inside `guards`, which the flow accepts (a flat `accept` is not a parameter of the flow)."""
    from prefect.cli._utilities import load_json_key_values
    from prefect.utilities.schema_tools.validation import validate

    from flows.artifacts import accept_parameters
    from flows.load import sync

    given = accept_parameters("braze-migrate sync /x --state /s --accept column:users.email,rows:purchases "
                              "--catalog-deletes")
    assert given == ["'guards={\"accept\": [\"column:users.email\", \"rows:purchases\"]}'",
                     "'catalogs={\"catalog_deletes\": true}'"]
    parameters = load_json_key_values([g.strip("'") for g in given], "parameter")  # as the shell hands them over
    assert parameters == {"guards": {"accept": ["column:users.email", "rows:purchases"]},
                          "catalogs": {"catalog_deletes": True}}
    validate({"source": "/x", "state": "/s", **parameters}, sync.parameters.model_dump(), raise_on_error=True)


def test_an_unchanged_export_is_not_logged_as_a_first_load(tmp_path):
    """Found by the Prefect trial (case 1): the plan task of a run whose export was unchanged logged "a first load
    into this state is planned while it loads" on a state folder with two committed runs."""
    from braze_migrate.run.engine import Prepared
    from flows.artifacts import plan_line

    message = "unchanged since run R2: the export is the one that run loaded; nothing was sent"
    line = plan_line(Prepared("R3", tmp_path / "plan", False, 0, unchanged={"message": message}), {})
    assert line == f"run R3: {message}"


# --- case 5: a renamed or vanished column holds the run ------------------------------------------------------

def test_a_column_renamed_by_case_holds_the_run_naming_both_and_the_accept(sandbox, tmp_path):
    e, state = env(sandbox, tmp_path), tmp_path / "state"
    assert run("backfill", write_night(tmp_path / "n1", USERS), state, e)[0] == 0
    renamed = {eid: {"Tier": a["tier"], "city": a["city"]} for eid, a in USERS.items()}
    before = known(sandbox)
    code, summary, err = run("sync", write_night(tmp_path / "n2", renamed), state, e)
    assert code == 4 and summary["status"] == "held" and known(sandbox) == before
    line = last_line(err)
    assert "'tier'" in line and "'Tier'" in line and "--accept column:users.tier" in line
    assert summary["message"] in line
    code, summary, _ = run("sync", tmp_path / "n2", state, e, "--accept", "column:users.tier")
    assert code == 0 and known(sandbox)["u001"]["custom_attributes"]["Tier"] == "gold"


def test_the_guards_table_of_a_renamed_column_names_the_new_column_too(sandbox, tmp_path):
    """The figures table (terminal, and the Prefect `guards` artifact and form) listed only the vanished column."""
    from types import SimpleNamespace

    from braze_migrate.plan.guards import GuardReport
    from flows.decisions import guards_markdown

    e, state = env(sandbox, tmp_path), tmp_path / "state"
    assert run("backfill", write_night(tmp_path / "n1", USERS), state, e)[0] == 0
    renamed = {eid: {"Tier": a["tier"], "city": a["city"]} for eid, a in USERS.items()}
    done = cli("sync", write_night(tmp_path / "n2", renamed), "--state", state, "--no-prefect", env=e)
    assert done.returncode == 4
    assert [line for line in done.stdout.splitlines() if line.strip().startswith("tier → Tier (renamed?)")]
    code, summary, _ = run("sync", tmp_path / "n2", state, e)
    assert code == 4
    artifact = guards_markdown(GuardReport.from_dict(summary["guards"]), SimpleNamespace(run_id="R", batches=1))
    assert "| tier → Tier (renamed?) |" in artifact


def test_a_vanished_column_holds_the_run(sandbox, tmp_path):
    e, state = env(sandbox, tmp_path), tmp_path / "state"
    assert run("backfill", write_night(tmp_path / "n1", USERS), state, e)[0] == 0
    code, _, err = run("sync", write_night(tmp_path / "n2", {k: {"city": "Oslo"} for k in USERS}), state, e,
                       "--guard-min-rows", "10")
    assert code == 4 and "column 'tier' of the last acknowledged export is missing" in last_line(err)
    assert "--accept column:users.tier" in last_line(err)


# --- case 6: exit 6 before sending, whatever the I/O error ------------------------------------------------------

def test_an_unwritable_snapshot_folder_exits_6_before_anything_is_sent(sandbox, tmp_path, monkeypatch, capsys):
    """EACCES at the OS boundary on snapshot/ only (tests run as root, so chmod would not deny)."""
    from braze_migrate.cli.main import main

    e, state = env(sandbox, tmp_path), tmp_path / "state"
    for k in ("BRAZE_REST_ENDPOINT", "BRAZE_API_KEY"):
        monkeypatch.setenv(k, e[k])
    real_open = os.open

    def deny(path, flags, *args, **kw):
        if "/snapshot/" in str(path) and flags & os.O_CREAT:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *args, **kw)

    monkeypatch.setattr(os, "open", deny)
    night = write_night(tmp_path / "n1", USERS, [event(i, "u001") for i in range(5)])
    assert main(["backfill", str(night), "--state", str(state), "--no-prefect"]) == 6
    err = capsys.readouterr().err
    assert last_line(err).startswith("braze-migrate: error: cannot write") and "snapshot" in last_line(err)
    assert known(sandbox) == {}  # nothing sent
    monkeypatch.setattr(os, "open", real_open)
    assert main(["backfill", str(night), "--state", str(state), "--no-prefect"]) == 0  # the same command resumes
    assert _events(sandbox) == 5 and len(known(sandbox)) == 30


@pytest.mark.parametrize("limit", [64 << 10, 512 << 10, 8 << 20])
def test_a_file_size_limit_exits_6_with_one_line_and_the_same_command_resumes(sandbox, tmp_path, limit):
    e, state = env(sandbox, tmp_path), tmp_path / "state"
    night = write_night(tmp_path / "n1", USERS, [event(i, f"u{i % 30:03d}") for i in range(60)])

    def limited():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    done = cli("backfill", night, "--state", state, "--no-prefect", env=e, preexec_fn=limited)
    if limit < (1 << 20):  # below what the run proves it can write: refused before anything is sent
        assert done.returncode == 6 and known(sandbox) == {}, done.stderr
    assert done.returncode in (0, 6), done.stderr
    if done.returncode == 6:
        assert last_line(done.stderr).startswith("braze-migrate: error: cannot write")
    done = cli("backfill", night, "--state", state, "--no-prefect", env=e)
    assert done.returncode == 0, done.stderr
    assert _events(sandbox) == 60 and len(known(sandbox)) == 30


# --- case 7: a users.csv symlink that leads nowhere ----------------------------------------------------------

@pytest.mark.parametrize("kind", ["dangling", "loop"])
def test_a_broken_users_symlink_is_an_error_naming_it(sandbox, tmp_path, kind):
    night = write_night(tmp_path / "n1", users=None, events=[event(1, "u001")])
    link = night / "users.csv"
    if kind == "dangling":
        link.symlink_to(tmp_path / "moved" / "users.csv")
    else:
        link.symlink_to(night / "users.csv")
    for strict in ([], ["--strict"]):
        done = cli("backfill", night, "--state", tmp_path / "state", "--no-prefect", *strict,
                   env=env(sandbox, tmp_path))
        assert done.returncode == 2 and str(link) in last_line(done.stderr)
    assert known(sandbox) == {}


# --- case 8: the smaller ones -----------------------------------------------------------------------------------

def test_conflicting_states_of_one_subscription_group_are_rejected_with_a_reason():
    from transforms.normalize import normalize_users

    lf = pl.LazyFrame({"external_id": ["a", "b"], "_file": ["u.ndjson"] * 2, "_row": [1, 2],
                       "subscription_groups": [
                           '[{"id": "g1", "state": "subscribed"}, {"id": "g1", "state": "unsubscribed"}]',
                           '[{"id": "g1", "state": "subscribed"}, {"id": "g1", "state": "Subscribed"}]']})
    norm = normalize_users(lf)
    good, rejects = pl.collect_all([norm.good, norm.rejects])
    assert rejects["key"].to_list() == ["a"] and rejects["column"].to_list() == ["subscription_groups"]
    assert "same group twice with different states" in rejects["reason"][0]
    assert json.loads(good.filter(pl.col("external_id") == "b")["subscription_groups"][0]) == [
        {"subscription_group_id": "g1", "subscription_state": "subscribed"}]


def test_one_string_item_id_leaves_the_other_users_integer_ids_alone(sandbox, tmp_path):
    users = {f"u{i}": {"pets[id]": [{"id": 1, "kind": "cat"}, {"id": 2, "kind": "dog"}]} for i in range(10)}
    e, state = env(sandbox, tmp_path), tmp_path / "state"
    code, first, _ = run("backfill", write_night(tmp_path / "n1", users), state, e)
    assert code == 0 and first["data_points"]["sent"] == first["data_points"]["full_resend"]
    assert known(sandbox)["u1"]["custom_attributes"]["pets"] == [{"id": 1, "kind": "cat"}, {"id": 2, "kind": "dog"}]
    users["u3"]["pets[id]"] = [{"id": "x", "kind": "owl"}]
    code, summary, _ = run("sync", write_night(tmp_path / "n2", users), state, e)
    assert code == 0 and summary["datasets"]["users"]["acknowledged"] == 1  # u3 only
    assert summary["datasets"]["users"]["unchanged"] == 9
    assert summary["data_points"]["sent"] <= summary["data_points"]["full_resend"]
    assert known(sandbox)["u1"]["custom_attributes"]["pets"] == [{"id": 1, "kind": "cat"}, {"id": 2, "kind": "dog"}]


def test_one_string_item_id_in_an_array_the_mapping_declares_leaves_the_others_alone(sandbox, tmp_path):
    """The same, with the array named `pets` in the export and declared by the mapping's `arrays_of_objects`
    (the reader kept only columns already named `pets[id]` as JSON text: every id became a string)."""
    users = {f"u{i}": {"pets": [{"id": 1, "kind": "cat"}, {"id": 2, "kind": "dog"}]} for i in range(10)}
    users["u3"]["pets"] = [{"id": "x", "kind": "owl"}]
    mapping = tmp_path / "m.yaml"
    mapping.write_text("datasets:\n  users:\n    arrays_of_objects: {pets: id}\n")
    e, state = env(sandbox, tmp_path), tmp_path / "state"
    code, first, _ = run("backfill", write_night(tmp_path / "n1", users), state, e, "--mapping", str(mapping))
    assert code == 0 and first["data_points"]["sent"] == first["data_points"]["full_resend"]
    assert known(sandbox)["u1"]["custom_attributes"]["pets"] == [{"id": 1, "kind": "cat"}, {"id": 2, "kind": "dog"}]
    assert known(sandbox)["u3"]["custom_attributes"]["pets"] == [{"id": "x", "kind": "owl"}]


def test_one_string_event_property_leaves_the_other_events_numbers_alone(sandbox, tmp_path):
    """The same root cause in events: NDJSON `properties` were read as one struct type over all rows, so one
    event's `"item_count": "many"` sent every event's `7` as `"7"`."""
    night = write_night(tmp_path / "n1", {"u1": {"tier": "gold"}})
    (night / "events.ndjson").write_text("".join(
        json.dumps({"event_id": f"e{i}", "external_id": "u1", "name": "opened", "time": event(i, "u1")["time"],
                    "properties": {"item_count": count, "box": {"n": count}}}) + "\n"
        for i, count in enumerate([7, 8, "many"])))
    code, _, _ = run("backfill", night, tmp_path / "state", env(sandbox, tmp_path))
    assert code == 0
    props = sorted((e["properties"] for e in known(sandbox)["u1"]["events"]), key=str)
    assert props == sorted([{"item_count": 7, "box": {"n": 7}}, {"item_count": 8, "box": {"n": 8}},
                            {"item_count": "many", "box": {"n": "many"}}], key=str)


def test_ids_that_differ_only_by_whitespace_are_merged_with_a_reason():
    """Braze's ids are exact, case-sensitive strings (its "Setting user IDs" page): nothing documents trimming."""
    from transforms.normalize import normalize_users

    lf = pl.LazyFrame({"external_id": [" dup", "dup", "dup ", "x", "x"], "city": ["a", "b", "c", "d", "e"],
                       "_file": ["u.csv"] * 5, "_row": [1, 2, 3, 4, 5]})
    norm = normalize_users(lf)
    good, rejects = pl.collect_all([norm.good, norm.rejects])
    assert good["external_id"].to_list() == ["dup", "x"]
    by_row = dict(zip(rejects["row"], rejects["reason"], strict=True))
    assert "surrounding whitespace is trimmed" in by_row[1] and "surrounding whitespace is trimmed" in by_row[2]
    assert "whitespace" not in by_row[4]  # a plain duplicate keeps its plain reason


def test_a_held_run_says_so_on_stderr_and_in_the_json(sandbox, tmp_path):
    e, state = env(sandbox, tmp_path), tmp_path / "state"
    assert run("backfill", write_night(tmp_path / "n1", USERS), state, e)[0] == 0
    renamed = {eid: {"TIER": a["tier"], "city": a["city"]} for eid, a in USERS.items()}
    done = cli("sync", write_night(tmp_path / "n2", renamed), "--state", state, "--no-prefect", env=e)
    assert done.returncode == 4 and last_line(done.stderr).startswith("braze-migrate: held by the guards")
    assert "held by the guards" not in done.stdout  # stdout keeps the figures
    code, summary, _ = run("sync", tmp_path / "n2", state, e)
    assert code == 4 and summary["message"] and summary["advice"][0]["command"].endswith("--accept column:users.tier")


def test_a_task_that_failed_on_purpose_logs_no_stray_nonetype_line():
    """Prefect logs "Task run failed with state: ..." with exc_info outside any exception: `NoneType: None`."""
    import io
    import logging

    import flows.decisions  # noqa: F401 - installs the filters on Prefect's run loggers

    out = io.StringIO()
    handler = logging.StreamHandler(out)
    logger = logging.getLogger("prefect.task_runs")
    logger.addHandler(handler)
    try:
        logger.error("Task run failed with state: Failed('the state folder is damaged')", exc_info=True)  # noqa: LOG014 - what Prefect does
    finally:
        logger.removeHandler(handler)
    assert "the state folder is damaged" in out.getvalue() and "NoneType: None" not in out.getvalue()


def test_a_cancelled_deployment_run_logs_no_engine_crash_traceback():
    """Found by the Prefect trial (exit 3's equivalent): a deployment run cancelled while loading stops cleanly
    (its summary says interrupted, the next run resumes), but the engine then asked its result in the CANCELLING
    state and logged "Engine execution exited with unexpected exception" with an `UnfinishedRun` traceback."""
    import io
    import logging

    from prefect.exceptions import UnfinishedRun

    from flows.decisions import ENGINE_EXIT

    engine_exit = "Execution of flow run '1b90e9a5' exited with unexpected exception"  # prefect/engine.py's own
    for name, message in (("prefect.flow_runs", ENGINE_EXIT), ("prefect.engine", engine_exit)):
        out = io.StringIO()
        handler = logging.StreamHandler(out)
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        try:
            for state in ("CANCELLING", "CANCELLED", "RUNNING"):
                try:
                    raise UnfinishedRun(f"Run is in {state} state, its result is not available.")
                except UnfinishedRun:
                    logger.exception(message)
        finally:
            logger.removeHandler(handler)
        text = out.getvalue()
        assert "CANCELLING" not in text and "CANCELLED" not in text, name
        assert "Run is in RUNNING state" in text  # anything else unexpected still surfaces whole


# --- found by the model of whole nights (tests/model/) --------------------------------------------------------

def test_repair_after_a_night_whose_export_was_unchanged(sandbox, tmp_path):
    """A run that found its export unchanged since an earlier run planned nothing: repair has nothing of it to
    replay, and must not take it for a committed run whose plan is gone (soak seed 424242)."""
    e, state = env(sandbox, tmp_path), tmp_path / "state"
    night = write_night(tmp_path / "n1", USERS, [event(i, "u001") for i in range(3)])
    assert run("backfill", night, state, e)[0] == 0
    code, summary, _ = run("sync", night, state, e)
    assert code == 0 and summary.get("unchanged_since")
    (state / "snapshot" / "events.parquet").unlink()
    assert run("sync", night, state, e)[0] == 5
    done = cli("repair", "--state", state, env=e)
    assert done.returncode == 0, done.stderr
    code, summary, _ = run("sync", write_night(tmp_path / "n2", USERS, [event(i, "u001") for i in range(4)]),
                           state, e)
    assert code == 0 and _events(sandbox) == 4  # the three acknowledged events are not resent


class _Killed(BaseException):
    """What kill -9 leaves: the process gone mid-stage, nothing after it run (the flock dies with it)."""


def test_a_run_killed_after_it_began_loading_but_before_a_batch_left_resumes(sandbox, tmp_path, monkeypatch):
    """Killed between `loading` and its first request, the run's batches are all still planned, so the resume
    judges it again: passing the guards must leave it loading, not move it back to planned (an illegal
    transition, a traceback on every later night until repair). Found by the model (soak seed 20261207)."""
    from braze_migrate.cli.main import main
    from braze_migrate.run import engine

    e, state = env(sandbox, tmp_path), tmp_path / "state"
    for k in ("BRAZE_REST_ENDPOINT", "BRAZE_API_KEY"):
        monkeypatch.setenv(k, e[k])
    assert main(["backfill", str(write_night(tmp_path / "n1", USERS, [event(i, "u001") for i in range(3)])),
                 "--state", str(state), "--no-prefect"]) == 0
    night2 = write_night(tmp_path / "n2", {**USERS, "u001": {"tier": "platinum", "city": "Oslo"}},
                         [event(i, "u001") for i in range(5)])

    def killed(*args, **kwargs):
        raise _Killed

    real = engine.apply_plan
    monkeypatch.setattr(engine, "apply_plan", killed)
    with pytest.raises(_Killed):
        main(["sync", str(night2), "--state", str(state), "--no-prefect"])
    monkeypatch.setattr(engine, "apply_plan", real)
    assert main(["sync", str(night2), "--state", str(state), "--no-prefect"]) == 0
    assert _events(sandbox) == 5 and known(sandbox)["u001"]["custom_attributes"]["tier"] == "platinum"
