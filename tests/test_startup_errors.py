"""Start-up failures of a command end in one line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "braze_migrate.cli.main", *args], cwd=ROOT, env=env or os.environ,
                          capture_output=True, text=True, timeout=120, check=False)


def one_line(done: subprocess.CompletedProcess) -> str:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


def test_the_sandbox_on_a_port_in_use_says_so_in_one_line():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = one_line(cli("sandbox", "--port", str(port)))
    assert f"127.0.0.1:{port}" in line and "in use" in line and "--port" in line


def test_verify_against_an_endpoint_nobody_answers_stops_at_once_in_one_line(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "BRAZE_REST_ENDPOINT": f"http://127.0.0.1:{port}", "BRAZE_API_KEY": "k-123456"}
    line = one_line(cli("verify", str(ROOT / "data/samples/day1"), "--state", str(tmp_path / "s"), "--no-prefect",
                        env=env))
    assert "could not be reached" in line and "BRAZE_REST_ENDPOINT" in line and "k-123456" not in line


def test_verify_with_a_refused_key_stops_in_one_line(braze_env, tmp_path):
    env = {**os.environ, "BRAZE_API_KEY": "wrong-key-98765"}
    line = one_line(cli("verify", str(ROOT / "data/samples/day1"), "--state", str(tmp_path / "s"), "--no-prefect",
                        env=env))
    assert "401" in line and "BRAZE_API_KEY" in line and "wrong-key-98765" not in line
