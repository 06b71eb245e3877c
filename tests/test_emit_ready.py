"""`braze-migrate emit-ready SOURCE` (braze_migrate/cli/emit_ready.py): the event it sends is the one the
nightly-sync trigger of prefect.yaml matches, and without a server it fails with one line and exit 2. The event
starting a sync through a real Prefect server: tests/test_prefect_tonight.py."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import yaml

from braze_migrate.cli.emit_ready import ready_event

ROOT = Path(__file__).resolve().parent.parent


def _cli(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "braze_migrate.cli.main", "emit-ready", *args], env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def _env(tmp_path: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    return {**env, "PREFECT_HOME": str(tmp_path / "prefect"), **extra}


def test_the_event_is_the_one_the_nightly_trigger_matches():
    nightly = next(d for d in yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]
                   if d["name"] == "nightly-sync")
    (trigger,) = nightly["triggers"]
    event = ready_event("s3://bucket/braze/2026-12-07/")
    assert trigger["expect"] == [event["event"]]
    assert trigger["match"]["prefect.resource.id"] == "braze-migrate.export.*"
    assert event["resource"]["prefect.resource.id"] == "braze-migrate.export.nightly"
    assert trigger["parameters"]["source"] == "{{ event.resource['braze-migrate.source'] }}"
    assert event["resource"]["braze-migrate.source"] == "s3://bucket/braze/2026-12-07/"


def test_without_a_server_it_is_one_line_and_exit_2(tmp_path):
    """Nothing listens on the port: the warehouse job fails visibly (never a traceback, never a silent 0)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing answers there
    done = _cli([str(tmp_path)], _env(tmp_path, PREFECT_API_URL=f"http://127.0.0.1:{port}/api"))
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [(
        f"braze-migrate: error: no Prefect server answers at http://127.0.0.1:{port}/api ([Errno 111] Connection "
        "refused): is it running, and is PREFECT_API_URL (or --api-url) its API address? The event was not sent")]


def test_without_an_api_url_or_with_a_relative_folder_not_here_it_says_so(tmp_path):
    done = _cli([str(tmp_path)], _env(tmp_path))
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "set PREFECT_API_URL" in done.stderr
    done = _cli(["not-written-yet"], _env(tmp_path, PREFECT_API_URL="http://127.0.0.1:9/api"))
    assert done.returncode == 2 and "not-written-yet: no such folder here" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
