"""Users known by alias, email or phone only (data/samples/identity): loaded, changed and kept in step with the
export through the CLI and the sandbox, exactly like external_id users; every identifier validated."""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from tests.conftest import API_KEY
from transforms import identity
from transforms import normalize as N

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"
NIGHTS = SAMPLES / "identity"


def _generator():
    spec = importlib.util.spec_from_file_location("samples_generate_identity", SAMPLES / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_identity_samples_are_what_the_generator_writes(tmp_path):
    _generator().write_identity(tmp_path)
    committed = sorted(p.relative_to(SAMPLES).as_posix() for p in NIGHTS.rglob("*") if p.is_file())
    fresh = sorted(p.relative_to(tmp_path).as_posix() for p in (tmp_path / "identity").rglob("*") if p.is_file())
    assert committed == fresh
    for name in committed:
        assert (SAMPLES / name).read_bytes() == (tmp_path / name).read_bytes(), name


def _users(rows: list[dict]) -> N.Normalized:
    lf = pl.DataFrame(rows).lazy().with_columns(_file=pl.lit("users.ndjson"),
                                                _row=pl.int_range(1, len(rows) + 1, dtype=pl.Int64))
    good, rejects = pl.collect_all(N.normalize_users(lf))
    return N.Normalized(good, rejects)


def test_precedence_external_id_then_alias_then_email_then_phone():
    good, rejects = _users([
        {"external_id": "u1", "alias_name": "a", "alias_label": "l", "email": "x@example.com", "phone": "+4930123456"},
        {"external_id": None, "alias_name": "a", "alias_label": "l", "email": "x@example.com", "phone": "+4930123456"},
        {"external_id": None, "alias_name": None, "alias_label": None, "email": "X@Example.com", "phone": "+4930123456"},
        {"external_id": None, "alias_name": None, "alias_label": None, "email": None, "phone": "+49 (30) 123-456"},
    ])
    assert rejects.height == 0
    kinds = good.select(identity.kind_of(pl.col("external_id")).alias("kind"))["kind"].to_list()
    assert sorted(kinds) == sorted(["external_id", "user_alias", "email", "phone"])
    keys = set(good["external_id"])
    assert {"u1", "\x1fuser_alias\x1fa\x1fl", "\x1femail\x1fx@example.com", "\x1fphone\x1f+4930123456"} == keys
    # alias_name and alias_label identify; they are never custom attributes
    assert "alias_name" not in good.columns and "alias_label" not in good.columns


@pytest.mark.parametrize(("row", "reason"), [
    ({"email": "not-an-address", "phone": None, "alias_name": None}, N.BAD_EMAIL_ID),
    ({"email": None, "phone": "0301234567", "alias_name": None}, N.BAD_PHONE_ID),
    ({"email": None, "phone": None, "alias_name": "half"}, N.HALF_ALIAS),
    ({"email": None, "phone": None, "alias_name": None}, N.MISSING_IDENTIFIER),
])
def test_an_invalid_identifier_rejects_the_row_with_its_reason_and_no_personal_value(row, reason):
    good, rejects = _users([{"external_id": None, "first_name": "A", **row}])
    assert good.height == 0
    assert rejects.select("reason", "value").rows() == [(reason, None)]


def test_an_external_id_that_looks_like_another_identity_is_rejected():
    good, rejects = _users([{"external_id": "\x1femail\x1fa@b.co"}])
    assert good.height == 0 and rejects["reason"].to_list() == [N.RESERVED_EXTERNAL_ID]


def test_objects_name_their_user_by_each_identifier():
    keys = pl.DataFrame({"k": ["u1", identity.key_of("user_alias", {"alias_name": "n", "alias_label": "l"}),
                               identity.key_of("email", "a@b.co"), identity.key_of("phone", "+4930123456")]})
    out = keys.select(identity.fragment(pl.col("k"), create_aliases=True).alias("f"))["f"].to_list()
    assert [json.loads("{" + f + "}") for f in out] == [
        {"external_id": "u1"},
        {"user_alias": {"alias_name": "n", "alias_label": "l"}, "_update_existing_only": False},
        {"email": "a@b.co"}, {"phone": "+4930123456"},
    ]
    for k in keys["k"]:
        assert identity.key_of(*identity.request_identifier(k)) == k


def _run(env: dict, command: str, night: int, state: Path, *extra: str) -> dict:
    r = subprocess.run([sys.executable, "-m", "braze_migrate.cli.main", command, str(NIGHTS / f"night{night}"),
                        "--state", str(state), "--no-prefect", "--json", *extra],
                       capture_output=True, text=True, env=env, timeout=300, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout)


def _by_identity(sandbox) -> dict[str, dict]:
    """Every sandbox profile under the key of the identity the export names it by."""
    out = {}
    for p in sandbox.profiles().values():
        if p["external_id"]:
            out[p["external_id"]] = p
        for a in p["user_aliases"]:
            out[identity.key_of("user_alias", a)] = p
        if not p["external_id"] and not p["user_aliases"]:
            if p.get("email"):
                out[identity.key_of("email", p["email"])] = p
            if p.get("phone"):
                out[identity.key_of("phone", p["phone"])] = p
    return out


def _expected(night: int) -> dict[str, dict]:
    good, _ = _users(_generator().identity_frames(night)["users"])
    return {r["external_id"]: r for r in good.to_dicts()}


def _in_step(sandbox, night: int) -> dict[str, dict]:
    """Every user of the night's export as Braze holds it: the same first name, tier and email."""
    profiles = _by_identity(sandbox)
    for key, row in _expected(night).items():
        profile = profiles[key]
        assert profile.get("first_name") == (json.loads(row["first_name"]) if row["first_name"] else None), key
        assert profile.get("email") == (json.loads(row["email"]) if row.get("email") else None), key
        assert profile["custom_attributes"].get("tier") == (json.loads(row["tier"]) if row.get("tier") else None)
    return profiles


def test_three_nights_of_alias_email_and_phone_users_identified_and_renamed_stay_in_step(sandbox, tmp_path):
    env = {**os.environ, "BRAZE_REST_ENDPOINT": sandbox.url, "BRAZE_API_KEY": API_KEY,
           "PREFECT_HOME": str(tmp_path / "prefect")}
    state = tmp_path / "state"
    first = _run(env, "backfill", 1, state, "--create-alias-users")
    assert first["status"] == "completed", first
    _in_step(sandbox, 1)

    before = sandbox.stats()["data_points"]
    second = _run(env, "sync", 2, state, "--create-alias-users")
    # One attribute (tier) changed for one user of each kind, plus four events and four purchases.
    assert sandbox.stats()["data_points"] - before == 4 + 4 + 4
    assert second["datasets"]["users"]["acknowledged"] == 4, second
    ids = second["identities"]
    assert (ids["done"]["identify"], ids["done"]["rename"], ids["pending"]["identify"]) == (10, 10, 0)
    assert second["datasets"]["identifies"]["acknowledged"] == 10
    assert second["datasets"]["external_id_renames"]["acknowledged"] == 10
    assert sandbox.stats()["requests_by_endpoint"]["/users/identify"] == 1
    assert sandbox.stats()["requests_by_endpoint"]["/users/external_ids/rename"] == 1
    profiles = _by_identity(sandbox)
    alias = identity.key_of("user_alias", {"alias_name": "dev-6", "alias_label": "legacy_id"})
    assert profiles[alias] is profiles["c16"] or profiles[alias]["braze_id"] == profiles["c16"]["braze_id"]
    assert profiles["k1"]["braze_id"] == sandbox.profile("c1")["braze_id"]  # the old id still names the user

    before = sandbox.stats()
    third = _run(env, "sync", 3, state, "--create-alias-users")
    after = sandbox.stats()
    # Under the new ids only the real changes go: the tier of k1 and of m1, and the night's occurrences.
    assert after["data_points"] - before["data_points"] == 2 + 4 + 4, third
    assert third["datasets"]["users"]["acknowledged"] == 2
    profiles = _in_step(sandbox, 3)
    # Every event and purchase of every night, exactly once, on the user the export names tonight.
    for key in ("k1", "m1", identity.key_of("email", "lead1@example.com"), identity.key_of("phone", "+49301234561")):
        assert sorted(e["name"] for e in profiles[key]["events"]) == ["visited"] * 3, key
        assert len(profiles[key]["purchases"]) == 3

    before = sandbox.stats()
    repeat = _run(env, "sync", 3, state, "--create-alias-users")
    after = sandbox.stats()  # a repeat sends nothing (its one request is the key check, which writes nothing)
    assert (after["objects"], after["data_points"]) == (before["objects"], before["data_points"])
    assert repeat["data_points"]["sent"] == 0 and repeat["batches"] == 0
    again = _run(env, "sync", 2, state, "--create-alias-users")  # night 2's requests again: already carried out
    assert again["identities"]["already_done"] == {"identify": 10, "rename": 10}
    assert sandbox.stats()["requests_by_endpoint"]["/users/identify"] == 1
    with open(third["rejects_file"], newline="") as fh:
        rejects = [r for r in csv.DictReader(fh) if r["dataset"] == "users"]
    assert sorted(r["reason"] for r in rejects) == sorted([N.BAD_EMAIL_ID, N.BAD_PHONE_ID, N.HALF_ALIAS])
    assert not any("@" in v or "+49" in v for r in rejects for v in r.values())  # no personal data


def test_alias_users_are_not_created_by_default_as_braze_documents(sandbox, tmp_path):
    env = {**os.environ, "BRAZE_REST_ENDPOINT": sandbox.url, "BRAZE_API_KEY": API_KEY,
           "PREFECT_HOME": str(tmp_path / "prefect")}
    _run(env, "backfill", 1, tmp_path / "state")
    profiles = _by_identity(sandbox)
    assert not any(k.startswith("\x1fuser_alias") for k in profiles)
    assert identity.key_of("email", "lead1@example.com") in profiles and "c1" in profiles


def test_plan_shows_each_identifier_kind_the_precedence_and_the_create_option(tmp_path):
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect")}
    r = subprocess.run([sys.executable, "-m", "braze_migrate.cli.main", "plan", str(NIGHTS / "night1"),
                        "--state", str(tmp_path / "state"), "--json"], capture_output=True, text=True, env=env,
                       timeout=300, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    preview = json.loads(r.stdout)["identities"]
    assert preview["create_alias_users"] is False  # Braze's default for alias objects
    assert preview["datasets"]["users"] == {"external_id": 21, "user_alias": 13, "email": 4, "phone": 4, "none": 1,
                                            "several": 2}
    assert preview["datasets"]["events"]["several"] == 0
    text = subprocess.run([sys.executable, "-m", "braze_migrate.cli.main", "plan", str(NIGHTS / "night1"),
                           "--state", str(tmp_path / "state"), "--create-alias-users"], capture_output=True,
                          text=True, env=env, timeout=300, check=False).stdout
    assert "2 rows carry several identifiers (precedence: external_id, alias, email, phone)" in text
    assert "alias objects create their user" in text


@pytest.mark.parametrize("path", ["/users/identify", "/users/external_ids/rename"])
def test_kill_9_during_an_identity_request_then_the_same_command_sends_nothing_twice(sandbox, tmp_path, path):
    """Killed while Braze holds the request (it applied it; its answer is delayed): the same command reads the
    users back, records what Braze did, and sends nothing again; night 3 then sends only real changes."""
    env = {**os.environ, "BRAZE_REST_ENDPOINT": sandbox.url, "BRAZE_API_KEY": API_KEY,
           "PREFECT_HOME": str(tmp_path / "prefect")}
    state = tmp_path / "state"
    _run(env, "backfill", 1, state, "--create-alias-users")
    # Applied, its answer held back (and only this endpoint's): the kill lands meanwhile.
    sandbox.configure(identity_latency_ms=120_000, identity_latency_path=path)
    args = [sys.executable, "-m", "braze_migrate.cli.main", "sync", str(NIGHTS / "night2"), "--state", str(state),
            "--no-prefect", "--json", "--create-alias-users"]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while not sandbox.stats()["requests_by_endpoint"].get(path) and proc.poll() is None:
            _pause(proc)
        assert proc.poll() is None, proc.communicate()[1][-3000:]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        sandbox.configure(identity_latency_ms=0, identity_latency_path=None)
    if path == "/users/external_ids/rename":  # the identify before it was answered: recorded, not settled
        assert sandbox.stats()["requests_by_endpoint"]["/users/identify"] == 1
    resumed = _run(env, "sync", 2, state, "--create-alias-users")
    ids = resumed["identities"]
    assert ids["settled_by_reading_back"] == 10  # the killed request's changes, read back, not requested again
    assert ids["done"] == ({"identify": 0, "rename": 10, "remove": 0} if path == "/users/identify"
                           else {"identify": 0, "rename": 0, "remove": 0})
    assert sandbox.stats()["requests_by_endpoint"]["/users/identify"] == 1
    assert sandbox.stats()["requests_by_endpoint"]["/users/external_ids/rename"] == 1
    before = sandbox.stats()["data_points"]
    third = _run(env, "sync", 3, state, "--create-alias-users")
    assert sandbox.stats()["data_points"] - before == 2 + 4 + 4, third
    _in_step(sandbox, 3)


def _pause(proc) -> None:
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=0.1)


def test_identity_requests_over_the_guard_are_held_and_deprecated_ids_removed_on_request(sandbox, tmp_path):
    env = {**os.environ, "BRAZE_REST_ENDPOINT": sandbox.url, "BRAZE_API_KEY": API_KEY,
           "PREFECT_HOME": str(tmp_path / "prefect")}
    state = tmp_path / "state"
    _run(env, "backfill", 1, state, "--create-alias-users")
    args = [sys.executable, "-m", "braze_migrate.cli.main", "sync", str(NIGHTS / "night2"), "--state", str(state),
            "--no-prefect", "--json", "--create-alias-users", "--identity-max-count", "5",
            "--remove-deprecated-ids"]
    held = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300, check=False)
    summary = json.loads(held.stdout)
    assert held.returncode == 4 and summary["status"] == "held", held.stderr[-2000:]
    assert "--allow-mass-identity" in summary["resume_command"]
    assert summary["identities"]["held"] and "20 users to identify or rename" in summary["message"]
    assert "/users/identify" not in sandbox.stats()["requests_by_endpoint"]
    done = _run(env, "sync", 2, state, "--create-alias-users", "--allow-mass-identity", "--remove-deprecated-ids")
    assert done["identities"]["done"] == {"identify": 10, "rename": 10, "remove": 10}
    assert sandbox.stats()["requests_by_endpoint"]["/users/external_ids/remove"] == 1
    assert "/users/delete" not in sandbox.stats()["requests_by_endpoint"]  # never deleted to remove an id
    assert sandbox.profile("c1") is None and sandbox.profile("k1")["first_name"] == "Cid1"


def test_identity_requests_appear_in_the_terminal_report_and_the_prefect_artifact():
    from braze_migrate.reporting.terminal import render_text
    from braze_migrate.summary import RunSummary
    from flows.artifacts import report_markdown

    report = {"requested": {"identify": 10, "rename": 10}, "already_done": {}, "rejected_rows": [], "held": False,
              "message": None, "batches": {"identify": 1, "rename": 1}, "acknowledged_batches": 2,
              "pending_batches": 0, "requests": {"identify": 1, "rename": 1},
              "done": {"identify": 10, "rename": 9, "remove": 0}, "refused": {"rename": 1},
              "pending": {"identify": 0, "rename": 0, "remove": 0}, "settled_by_reading_back": 0}
    summary = RunSummary.model_validate({"run_id": "r", "kind": "sync", "source": "s", "state": "st",
                                         "status": "completed", "identities": report})
    line = "identity requests: identify 10 done; rename 9 done, 1 refused (requests: identify 1, rename 1)"
    assert line in render_text(summary)
    assert "## Identity requests" in report_markdown(summary) and line in report_markdown(summary)
    assert "identities" in summary.to_json()


def test_verify_reads_back_users_by_alias_email_and_phone(sandbox, tmp_path):
    env = {**os.environ, "BRAZE_REST_ENDPOINT": sandbox.url, "BRAZE_API_KEY": API_KEY,
           "PREFECT_HOME": str(tmp_path / "prefect")}
    state = tmp_path / "state"
    _run(env, "backfill", 1, state, "--create-alias-users")
    r = subprocess.run([sys.executable, "-m", "braze_migrate.cli.main", "verify", str(NIGHTS / "night1"), "--state",
                        str(state), "--sample", "100", "--no-prefect", "--json"], capture_output=True, text=True,
                       env=env, timeout=300, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    report = json.loads(r.stdout)
    assert (report["sampled"], report["mismatched"]) == (40, 0), report
    # external ids and aliases 50 per request (34 users: one request), one request per email and per phone user
    assert report["requests"] == 1 + 3 + 3
    sandbox.patch_user("c1", first_name="Changed")
    changed = subprocess.run([sys.executable, "-m", "braze_migrate.cli.main", "verify", str(NIGHTS / "night1"),
                              "--state", str(state), "--sample", "100", "--no-prefect", "--json"],
                             capture_output=True, text=True, env=env, timeout=300, check=False)
    assert json.loads(changed.stdout)["mismatched"] == 1


def test_user_deletes_are_batched_one_identifier_kind_per_request():
    from braze_migrate.ops.deletes import _batched
    from connectors.braze.deletes import delete_body

    alias = identity.key_of("user_alias", {"alias_name": "n", "alias_label": "l"})
    email = identity.key_of("email", "a@example.com")
    keys = ["u1", email, alias, "u2", identity.key_of("phone", "+4930123456")]
    batched = _batched(pl.DataFrame({"external_id": keys}))
    groups = batched.group_by("batch_no", maintain_order=True).agg("external_id")["external_id"].to_list()
    assert [delete_body(g) for g in groups] == [
        {"external_ids": ["u1", "u2"]},
        {"user_aliases": [{"alias_name": "n", "alias_label": "l"}]},
        {"email_addresses": ["a@example.com"]},
        {"phone_numbers": ["+4930123456"]},
    ]
    with pytest.raises(ValueError, match="one identifier kind"):
        delete_body(["u1", email])
