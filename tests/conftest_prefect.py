"""A real Prefect server for end-to-end tests, and a served copy of our deployments.

`prefect server start` runs on a free loopback port with its own temporary PREFECT_HOME (a fresh database
migrates in 20-35 s, so the server is session-scoped). Test modules import the fixture
(`from tests.conftest_prefect import prefect_server`) and serve our deployments with `serving(...)`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT_S = 240  # a bound for slow machines, not an expectation: start-up is measured and reported
QUIET = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_UI_ENABLED": "false",
    "PREFECT_LOGGING_LEVEL": "INFO",
    "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
}


@dataclass
class PrefectServer:
    """A running server: its API URL, the environment child processes need to use it, its start-up time."""

    api_url: str
    env: dict[str, str]
    startup_s: float
    log: Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check: Callable[[], bool], timeout: float, what: str, alive: Callable[[], bool] = lambda: True,
             log: Path | None = None) -> None:
    """Poll `check` until true; fail with the log's tail if the process died or the bound passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if not alive():
            break
        time.sleep(0.25)
    tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
    pytest.fail(f"{what} did not come up\n{tail}")


def stop(proc: subprocess.Popen) -> None:
    """SIGINT first (graceful shutdown), then kill."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _healthy(api_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory) -> Iterator[PrefectServer]:
    """`prefect server start` on 127.0.0.1 with a fresh PREFECT_HOME."""
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_PROFILE")}
    env.update(QUIET, PREFECT_HOME=str(home), PREFECT_UI_URL=f"http://127.0.0.1:{port}")  # alerts link runs
    log = home / "server.log"
    started = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT, cwd=home,
        )
    try:
        wait_for(lambda: _healthy(api_url), STARTUP_TIMEOUT_S, "prefect server",
                 alive=lambda: proc.poll() is None, log=log)
        yield PrefectServer(api_url, {**env, "PREFECT_API_URL": api_url}, time.monotonic() - started, log)
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def prefect_api(prefect_server):
    """The server, with this process's Prefect client pointed at it for the module."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: prefect_server.api_url}):
        yield prefect_server


@contextmanager
def serving(server: PrefectServer, env: dict[str, str | None], log: Path, names: list[str]) -> Iterator[None]:
    """`python -m flows.serve` against the server with extra environment (None removes a variable), until
    every deployment in `names` (`flow/deployment`) is registered."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    full = {**server.env, "PREFECT_RUNNER_POLL_FREQUENCY": "1", **env}
    full = {k: v for k, v in full.items() if v is not None}

    def registered() -> bool:
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}), get_client(sync_client=True) as c:
            try:
                return all(c.read_deployment_by_name(name) for name in names)
            except Exception:  # noqa: BLE001 - not registered yet (ObjectNotFound) or server busy
                return False

    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "flows.serve", "--limit", "2"], env=full, cwd=ROOT,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(registered, STARTUP_TIMEOUT_S, "flows.serve", alive=lambda: proc.poll() is None, log=log)
        yield
    finally:
        stop(proc)
