"""Conformance: the `/_sandbox` hooks, the handle's helpers, and the command line."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from braze_sandbox import SandboxConfig, add_cli_arguments, run_cli, start_sandbox

from tests.sandbox.helpers import KEY, attrs, event, open_api

ROOT = Path(__file__).resolve().parents[2]


def test_rule_state_hook_returns_profiles_stats_and_settings(api):
    """Rule (sandbox): GET /_sandbox/state returns every profile, the counters and the settings
    (never the API key)."""
    api.track(attributes=[attrs(first_name="Ada")], events=[event()])
    state = httpx.get(api.handle.url + "/_sandbox/state").json()
    assert set(state) == {"profiles", "stats", "config"}
    assert state["profiles"]["u1"]["first_name"] == "Ada"
    assert state["stats"]["requests"] == 1 and state["stats"]["events_stored"] == 1
    assert "api_key" not in state["config"]


def test_rule_profiles_are_keyed_by_external_id(api):
    """Rule (sandbox): profiles() maps external_id -> {standard fields, custom_attributes, push_tokens,
    events, purchases}."""
    api.track(attributes=[attrs("u1", first_name="Ada", plan="gold")])
    profile = api.handle.profiles()["u1"]
    for key in (
        "external_id",
        "braze_id",
        "first_name",
        "custom_attributes",
        "push_tokens",
        "events",
        "purchases",
    ):
        assert key in profile


def test_rule_stats_counters(api):
    """Rule (sandbox): stats() counts requests, requests by status, throttled, data points,
    objects and faults."""
    api.track(attributes=[attrs(plan="gold")])
    api.track(attributes=[attrs(email="bad")])
    stats = api.stats()
    assert stats["requests"] == 2 and stats["requests_by_status"] == {"201": 1, "400": 1}
    assert stats["throttled"] == 0 and stats["data_points"] == 1
    assert stats["objects"]["attributes_processed"] == 1 and stats["objects"]["rejected"] == 1
    assert stats["faults"] == {"fail": 0, "applied_then_fail": 0, "reset": 0, "storm": 0, "latency": 0}


def test_rule_patch_user_alters_a_profile_for_verification(api):
    """Rule (sandbox): PATCH /_sandbox/users/{external_id} alters a stored profile (drift for
    verification tests)."""
    api.track(attributes=[attrs(first_name="Ada", plan="gold", tier="1")])
    changed = api.handle.patch_user(
        "u1", first_name="Eve", custom_attributes={"plan": "silver", "tier": None}
    )
    assert changed["first_name"] == "Eve" and changed["custom_attributes"] == {"plan": "silver"}
    (user,) = api.export(external_ids=["u1"], fields_to_export=["first_name", "custom_attributes"]).json()[
        "users"
    ]
    assert user["first_name"] == "Eve" and user["custom_attributes"] == {"plan": "silver"}
    assert api.handle.patch_user("nobody", first_name="X") is None
    assert api.handle.patch_user("nobody", create=True, first_name="X")["first_name"] == "X"
    assert api.http.patch("/_sandbox/users/u1", json={"typo_field": 1}).status_code == 400


def test_rule_delete_and_reset_hooks(api):
    """Rule (sandbox): DELETE /_sandbox/users/{id} removes a profile; POST /_sandbox/reset forgets all."""
    api.track(attributes=[attrs("u1"), attrs("u2")])
    assert api.handle.delete_user("u1") is True and api.handle.delete_user("u1") is False
    assert list(api.handle.profiles()) == ["u2"]
    api.handle.reset()
    assert api.handle.profiles() == {} and api.stats()["requests"] == 0


def test_rule_external_ids_with_slashes_in_hooks(api):
    """Rule (sandbox): external_ids are any text; the user hooks take them URL-encoded."""
    api.track(attributes=[attrs("a/b c", first_name="Slash")])
    assert api.handle.profile("a/b c")["first_name"] == "Slash"


def test_rule_isolated_sandbox_runs_in_its_own_process():
    """Rule (sandbox): start_sandbox(isolated=True) runs the server in a subprocess, same API."""
    with start_sandbox(SandboxConfig(api_key=KEY, fail_rate=0.0), isolated=True) as handle:
        api = open_api(handle)
        assert api.track(attributes=[attrs()]).status_code == 201
        assert handle.profiles()["u1"]["external_id"] == "u1"
        api.http.close()


def run_module(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BRAZE_API_KEY": "cli-key"}
    return subprocess.Popen(
        [sys.executable, "-m", "braze_sandbox", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_rule_cli_prints_ready_line_and_exits_cleanly_on_signal(signum):
    """Rule (sandbox): `python -m braze_sandbox --port N` prints one line when ready
    and exits 0 on SIGINT/SIGTERM."""
    process = run_module("--port", "0", "--rate-limit", "10/1s", "--seed", "1")
    line = process.stdout.readline()
    assert line.startswith("sandbox listening on http://127.0.0.1:")
    url = line.split()[-1]
    assert (
        httpx.post(
            url + "/users/track", json={"attributes": [attrs()]}, headers={"Authorization": "Bearer cli-key"}
        ).status_code
        == 201
    )
    process.send_signal(signum)
    assert process.wait(timeout=15) == 0
    _, stderr = process.communicate()
    assert "cli-key" not in stderr


def test_rule_cli_dump_prints_stored_profiles(api, capsys):
    """Rule (sandbox): `sandbox dump --url URL` prints the stored profiles and counters as JSON."""
    api.track(attributes=[attrs(first_name="Dumped")])
    parser = argparse.ArgumentParser()
    add_cli_arguments(parser)
    assert run_cli(parser.parse_args(["dump", "--url", api.handle.url])) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["profiles"]["u1"]["first_name"] == "Dumped" and document["stats"]["requests"] == 1
    assert run_cli(parser.parse_args(["dump", "--url", api.handle.url, "--what", "stats"])) == 0
    assert json.loads(capsys.readouterr().out)["requests"] == 1


def test_rule_cli_rejects_bad_settings():
    """Rule (sandbox): a bad setting (mode, rate) stops the CLI with exit code 2 before serving."""
    parser = argparse.ArgumentParser()
    add_cli_arguments(parser)
    assert run_cli(parser.parse_args(["--rate-limit", "fast"])) == 2
