"""The credentials check (braze_migrate/load/preflight.py) against the sandbox over HTTP: Braze answers it with
success, it writes and bills nothing, it is sent once a batch is ready and never when a run has nothing to send."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from braze_migrate.load.preflight import EXPORT_PROBE, TRACK_PROBE, check_credentials
from connectors.braze.outcomes import BrazeConfigError
from tests.conftest import API_KEY
from tests.exports import write_export

ROOT = Path(__file__).resolve().parent.parent


def run(kind: str, src: Path, state: Path, sandbox) -> dict:
    env = {**os.environ, "BRAZE_REST_ENDPOINT": sandbox.url, "BRAZE_API_KEY": API_KEY}
    r = subprocess.run([sys.executable, "-m", "braze_migrate.cli.main", kind, str(src), "--state", str(state), "--no-prefect",
                        "--json"], cwd=ROOT, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout)


def test_the_probes_are_answered_with_success_and_write_nothing(sandbox):
    before = sandbox.stats()
    check_credentials(sandbox.url, API_KEY)
    check_credentials(sandbox.url, API_KEY, path="/users/export/ids", body=EXPORT_PROBE)
    after = sandbox.stats()
    assert after["requests_by_status"].get("201", 0) - before["requests_by_status"].get("201", 0) == 2
    assert after["data_points"] == before["data_points"] and sandbox.profiles() == {}
    assert TRACK_PROBE["attributes"][0]["_update_existing_only"] is True


def test_a_refused_key_is_one_configuration_error(sandbox):
    with pytest.raises(BrazeConfigError, match="401.*BRAZE_API_KEY"):
        check_credentials(sandbox.url, "not-the-key")


def test_a_run_with_nothing_to_send_sends_no_request(sandbox, tmp_path):
    src, state = write_export(tmp_path / "export", "parquet"), tmp_path / "state"
    before = sandbox.stats()["requests"]
    first = run("backfill", src, state, sandbox)
    assert first["status"] == "completed" and first["requests"] >= 1
    assert sandbox.stats()["requests"] - before == first["requests"] + 1  # the batches and one credentials check
    before = sandbox.stats()["requests"]
    again = run("sync", src, state, sandbox)
    assert again["status"] == "completed" and again["requests"] == 0
    assert sandbox.stats()["requests"] == before
