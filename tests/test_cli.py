"""The `braze-migrate` command as a user runs it: one-line errors, --json summary, plan, status."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import API_KEY
from tests.exports import write_export

BIN = Path(sys.executable).parent / "braze-migrate"


def cli(*args, env=None, timeout=180):
    return subprocess.run([str(BIN), *map(str, args)], env=env or os.environ, capture_output=True, text=True,
                          timeout=timeout, check=False)


def without_braze_env():
    return {k: v for k, v in os.environ.items() if not k.startswith("BRAZE_")}


def test_missing_configuration_is_one_line_naming_both_variables(tmp_path):
    done = cli("backfill", tmp_path, "--state", tmp_path / "s", env=without_braze_env())
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "BRAZE_REST_ENDPOINT" in lines[0] and "BRAZE_API_KEY" in lines[0]
    assert "Traceback" not in done.stderr


def test_wrong_api_key_stops_within_seconds_with_one_line_and_no_key(braze_env, tmp_path):
    """The key is checked once a batch is ready to go (a run with nothing to send sends no request): the
    probe's 401 stops the run before any batch is sent, in one error line after the progress lines."""
    src = write_export(tmp_path / "export", "parquet")
    env = {**os.environ, "BRAZE_API_KEY": "wrong-key-1234"}
    before = braze_env.stats()["requests"]
    started = time.monotonic()
    done = cli("backfill", src, "--state", tmp_path / "s", "--no-prefect", env=env)
    elapsed = time.monotonic() - started
    assert done.returncode == 2
    errors = [line for line in done.stderr.strip().splitlines() if not line.startswith("[braze-migrate]")]
    assert len(errors) == 1, done.stderr
    assert "BRAZE_API_KEY" in errors[0] and "BRAZE_REST_ENDPOINT" in errors[0]
    assert "wrong-key-1234" not in done.stderr + done.stdout and "Traceback" not in done.stderr
    assert braze_env.stats()["requests"] - before == 1  # the credentials check, no batch
    assert elapsed < 30  # generous for a loaded CI machine; measured well under 5 s


def test_unknown_source_folder_is_one_line(braze_env, tmp_path):
    done = cli("backfill", tmp_path / "nope", "--state", tmp_path / "s")
    assert done.returncode == 2 and "does not exist" in done.stderr and "Traceback" not in done.stderr


def test_bad_rate_limit_setting_is_one_line(braze_env, tmp_path):
    done = cli("backfill", tmp_path, "--state", tmp_path / "s", "--rate-limit", "lots")
    assert done.returncode == 2 and "rate" in done.stderr and "Traceback" not in done.stderr


def test_backfill_json_summary_then_status_through_prefect(braze_env, tmp_path):
    src = write_export(tmp_path / "export", "csv")
    done = cli("backfill", src, "--state", tmp_path / "s", "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["status"] == "completed" and summary["requests"] >= 1
    for name in ("users", "purchases", "events", "push_tokens"):
        b = summary["datasets"][name]
        assert set(b) >= {"read", "acknowledged", "rejected", "unchanged", "pending"}
        assert b["acknowledged"] + b["rejected"] + b["unchanged"] + b["pending"] == b["read"]
    assert Path(summary["rejects_file"]).exists()
    for secret in (API_KEY, "ann@example.com", "a" * 64):
        assert secret not in done.stdout + done.stderr
    status = cli("status", "--state", tmp_path / "s", "--json")
    assert json.loads(status.stdout)[0]["result"] == "completed"


def test_plan_is_a_dry_run_with_costs_and_payloads(braze_env, tmp_path):
    src = write_export(tmp_path / "export", "parquet")
    before = braze_env.stats()["requests"]
    done = cli("plan", src, "--state", tmp_path / "s", "--out", tmp_path / "plan", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["requests"] >= 1 and result["data_points"] > 0
    assert result["datasets"]["users"]["to_send"] == 3
    lines = (tmp_path / "plan" / "payloads.ndjson").read_text().splitlines()
    assert len(lines) == result["requests"]
    assert braze_env.stats()["requests"] == before
