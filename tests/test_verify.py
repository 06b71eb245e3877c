"""`verify` against the sandbox over real HTTP: a clean load verifies with no mismatch, and an altered profile
is reported alone, by external_id, field and kind (never a value). Plus the comparison rules on their own."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import orjson
import polars as pl
import pytest
from braze_sandbox import SandboxConfig, start_sandbox

from braze_migrate.cli.main import main as cli_main
from braze_migrate.ops import verify as v
from braze_migrate.plan.planner import normalized_datasets
from braze_migrate.run.engine import Engine
from braze_migrate.settings import load_settings
from connectors.state.snapshot import SCHEMAS, Snapshot
from tests.conftest import API_KEY

ROOT = Path(__file__).resolve().parent.parent
DAY1, DAY2 = str(ROOT / "data/samples/day1"), str(ROOT / "data/samples/day2")


def load(kind: str, source: str, state: Path, url: str) -> dict:
    engine = Engine(load_settings(state=state))
    try:
        prepared = engine.prepare(kind, source)
        engine.apply(prepared, url, API_KEY)
        return engine.finish(prepared, started=time.monotonic())
    finally:
        engine.close()


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """A sandbox holding day 1 then the day 2 sync, and the state folder of those loads."""
    state = tmp_path_factory.mktemp("verify") / "state"
    with start_sandbox(SandboxConfig(api_key=API_KEY)) as sandbox:
        assert load("backfill", DAY1, state, sandbox.url)["status"] == "completed"
        assert load("sync", DAY2, state, sandbox.url)["status"] == "completed"
        yield sandbox, state


def run_verify(loaded, sample: int = v.DEFAULT_SAMPLE) -> v.VerifyReport:
    sandbox, state = loaded
    return v.verify(DAY2, state, sample, endpoint=sandbox.url, api_key=API_KEY)


@pytest.fixture
def subject(loaded):
    """A sampled user with attributes, push tokens, purchases and events; its profile is restored after."""
    sandbox, state = loaded
    expected = v.build_expectations(DAY2, state, v.DEFAULT_SAMPLE).users
    user = next(u for u in expected
                if u.tokens and u.purchases and u.events and "loyalty_tier" in u.attributes)
    before = sandbox.profile(user.external_id)
    yield user.external_id, before
    after = sandbox.profile(user.external_id)
    custom = {k: before["custom_attributes"].get(k)
              for k in {*before["custom_attributes"], *after["custom_attributes"]}
              if before["custom_attributes"].get(k) != after["custom_attributes"].get(k)}
    standard = {k: before.get(k) for k in v.EXPORTED_STANDARD if before.get(k) != after.get(k)}
    occurrences = {k: before[k] for k in ("push_tokens", "events", "purchases")}
    sandbox.patch_user(user.external_id, **standard, custom_attributes=custom, **occurrences)


def test_a_clean_load_verifies_without_mismatch(loaded):
    report = run_verify(loaded)
    assert (report.sampled, report.matched, report.mismatched, report.mismatches) == (200, 200, 0, [])
    assert report.requests == 4  # 200 ids, at most 50 per export request


ALTERATIONS = {
    "custom attribute changed": (lambda p: {"custom_attributes": {"loyalty_tier": "tin"}},
                                 {("loyalty_tier", "value_different")}),
    "custom attribute removed": (lambda p: {"custom_attributes": {"loyalty_tier": None}},
                                 {("loyalty_tier", "value_missing")}),
    "standard field changed": (lambda p: {"first_name": p["first_name"] + "x"},
                               {("first_name", "value_different")}),
    "push token lost": (lambda p: {"push_tokens": p["push_tokens"][1:]}, {("push_tokens", "tokens_missing")}),
    "purchase duplicated": (lambda p: {"purchases": p["purchases"] + p["purchases"][:1]},
                            {("purchases:{first_purchase}", "count_higher")}),
    "event missing": (lambda p: {"events": p["events"][1:]}, {("events:{first_event}", "count_lower")}),
}


@pytest.mark.parametrize("alteration", ALTERATIONS)
def test_an_altered_profile_is_reported_alone(alteration, loaded, subject):
    sandbox, _ = loaded
    external_id, before = subject
    change, expected = ALTERATIONS[alteration]
    sandbox.patch_user(external_id, **change(before))
    names = {"first_purchase": before["purchases"][0]["product_id"],
             "first_event": before["events"][0]["name"]}
    expected = {(field.format(**names), kind) for field, kind in expected}

    report = run_verify(loaded)

    assert report.mismatched == 1 and report.matched == report.sampled - 1
    found = {(m.external_id, m.field, m.kind) for m in report.mismatches}
    assert found == {(external_id, *e) for e in expected}


def test_mismatches_carry_no_values(loaded, subject):
    sandbox, _ = loaded
    external_id, before = subject
    sandbox.patch_user(external_id, email="changed." + before["email"])
    report = run_verify(loaded)
    dumped = json.dumps(report.to_dict())
    assert before["email"] not in dumped and "changed." not in dumped
    assert report.mismatches == [v.Mismatch(external_id, "email", "value_different")]


def test_cli_exits_0_when_everything_matches_and_1_otherwise(loaded, subject, monkeypatch, capsys):
    sandbox, state = loaded
    external_id, _ = subject
    monkeypatch.setenv("BRAZE_REST_ENDPOINT", sandbox.url)
    monkeypatch.setenv("BRAZE_API_KEY", API_KEY)
    argv = ["verify", DAY2, "--state", str(state), "--json", "--no-prefect"]

    assert cli_main(argv) == 0
    clean = json.loads(capsys.readouterr().out)
    assert (clean["sampled"], clean["mismatched"]) == (200, 0)

    sandbox.patch_user(external_id, push_tokens=[])
    assert cli_main(argv) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["mismatched"] == 1
    assert report["mismatches"] == [
        {"external_id": external_id, "field": "push_tokens", "kind": "tokens_missing"}]


def test_counts_follow_the_export_window_of_braze(loaded):
    sandbox, state = loaded
    sandbox.configure(export_event_window_days=90)
    try:
        everything = run_verify(loaded)
        windowed = v.verify(DAY2, state, v.DEFAULT_SAMPLE, endpoint=sandbox.url, api_key=API_KEY,
                            since=v.since_days(90))
    finally:
        sandbox.configure(export_event_window_days=None)
    assert {m.kind for m in everything.mismatches} == {"count_lower"}  # older occurrences are not exported
    assert windowed.mismatches == []


def test_the_sample_is_stable_and_independent_of_row_order():
    ids = [f"{i:06d}" for i in range(1000)]
    forward = v.sample_ids([pl.LazyFrame({"external_id": ids})], 50)
    frames = [pl.LazyFrame({"external_id": ids[::-1]}), pl.LazyFrame({"external_id": ids[:10]})]
    backward = v.sample_ids(frames, 50)
    assert forward == backward and len(set(forward)) == 50
    assert v.sample_ids([pl.LazyFrame({"external_id": ids})], 80)[:50] == forward  # a larger one extends it


def test_objects_held_by_the_state_set_no_expectation(tmp_path):
    users = v.build_expectations(DAY1, tmp_path / "empty-state", 200).users
    user = next(u for u in users if u.purchases)
    good = normalized_datasets(DAY1, work_dir=tmp_path / "work")["purchases"][1].good.filter(
        pl.col("external_id") == user.external_id)
    purchase = json.loads(good.collect().row(0, named=True)["object"])
    purchase_id = good.collect()["purchase_id"][0]
    held = pl.DataFrame([
        {"dataset": "purchases", "key": purchase_id, "fingerprint": 0, "status": "rejected",
         "reason": "rejected by Braze", "run_id": "r"},
        {"dataset": "users", "key": user.external_id, "fingerprint": 0, "status": "rejected",
         "reason": "rejected by Braze", "run_id": "r"},
    ], schema=SCHEMAS["held"])
    Snapshot(tmp_path / "held-state").replace("held", held)

    with_held = v.build_expectations(DAY1, tmp_path / "held-state", 200)
    again = next(u for u in with_held.users if u.external_id == user.external_id)
    low, high = user.purchases[purchase["product_id"]]
    quantity = purchase.get("quantity", 1)
    assert again.purchases.get(purchase["product_id"], (0, 0)) == (low - quantity, high - quantity)
    assert again.attributes == {} and user.attributes
    assert with_held.excluded == 2


def test_in_doubt_occurrences_are_a_range():
    user = v.Expectation("u1", purchases={"sku": (1, 3)}, events={"open": (2, 2)})
    exported = {"external_id": "u1", "purchases": [{"name": "sku", "count": 3}],
                "custom_events": [{"name": "open", "count": 2}, {"name": "extra", "count": 1}]}
    assert v.compare_user(user, exported) == [v.Mismatch("u1", "events:extra", "count_higher")]
    exported["purchases"] = [{"name": "sku", "count": 4}]
    assert v.Mismatch("u1", "purchases:sku", "count_higher") in v.compare_user(user, exported)


def test_users_braze_did_not_answer_for_are_reported_unread():
    users = [v.Expectation("u1", attributes={"tier": "gold"}), v.Expectation("u2")]
    expectations = v.Expectations(users, [], 0)
    read = v.ReadBack({"u2": {"external_id": "u2"}}, unread={"u1"})
    report = v.compare("src", expectations, read)
    assert (report.mismatched, report.mismatches) == (1, [v.Mismatch("u1", "profile", "unread")])


def test_a_missing_profile_is_one_mismatch_when_something_was_expected():
    assert v.compare_user(v.Expectation("u1", attributes={"tier": "gold"}), None) == [
        v.Mismatch("u1", "profile", "user_missing")]
    assert v.compare_user(v.Expectation("u2", attributes={"tier": None}), None) == []


@pytest.mark.parametrize("want,have,same", [
    ("2024-05-01T12:00:00.000Z", "2024-05-01T14:00:00+02:00", True),
    ("2024-05-01", "2024-05-01T00:00:00.000Z", True),
    ({"$time": "2024-05-01T12:00:00.000Z"}, "2024-05-01 12:00:00", True),
    ("2024-05-01T12:00:00.000Z", "2024-05-01T12:00:01.000Z", False),
    (12, 12.0, True),
    (0.1 + 0.2, 0.3, True),
    (1, True, False),
    ("12", 12, False),
    (["a", "b"], ["b", "a", "a"], True),
    (["a"], ["a", "b"], False),
    ({"k": 1, "at": {"$time": "2025-07-20T00:00:00.000Z"}}, {"k": 1.0, "at": {"$time": "2025-07-20"}}, True),
    ({"k": 1}, {"k": 1, "j": 2}, False),
    ("  Oslo", "Oslo", True),
])
def test_values_compare_as_braze_means_them(want, have, same):
    assert v.same_value(want, have) is same


def test_emails_compare_without_case():
    assert v.same_value("Ann@Example.com", "ann@example.com", casefold=True)
    assert not v.same_value("Ann", "ann")


def test_export_requests_hold_at_most_50_ids_and_5xx_is_retried():
    seen: list[dict] = []
    answers = iter([503])

    def handler(request: httpx.Request) -> httpx.Response:
        body = orjson.loads(request.content)
        assert request.headers["Authorization"] == "Bearer k" and request.url.path == "/users/export/ids"
        status = next(answers, 201)
        if status != 201:
            return httpx.Response(status)
        seen.append(body)
        return httpx.Response(201, json={"users": [{"external_id": i} for i in body["external_ids"]],
                                         "invalid_user_ids": [], "message": "success"})

    async def no_sleep(_seconds: float) -> None:
        return None

    ids = [f"u{i}" for i in range(120)]
    read = v.read_profiles("http://braze.test", "k", ids, ["external_id", "custom_attributes"],
                           transport=httpx.MockTransport(handler), sleep=no_sleep)
    assert [len(b["external_ids"]) for b in seen] == [50, 50, 20]
    assert all(b["fields_to_export"] == ["external_id", "custom_attributes"] for b in seen)
    assert set(read.profiles) == set(ids) and read.requests == 4 and read.retries == 1
