"""Fixtures for the sandbox conformance suite: real servers on loopback, spoken to with httpx."""

from __future__ import annotations

import pytest
from braze_sandbox import SandboxConfig, start_sandbox

from tests.sandbox.helpers import KEY, UNLIMITED, Api, open_api


@pytest.fixture(scope="session")
def shared_sandbox():
    """One sandbox for most rules; rate limits high enough never to interfere."""
    with start_sandbox(
        SandboxConfig(api_key=KEY, rate_limit=UNLIMITED, export_rate_limit=UNLIMITED)
    ) as handle:
        yield handle


@pytest.fixture(scope="session")
def shared_api(shared_sandbox):
    client = open_api(shared_sandbox)
    yield client
    client.http.close()


@pytest.fixture
def api(shared_api):
    """The shared sandbox, emptied, with default settings and no faults."""
    handle = shared_api.handle
    handle.configure(
        fail_rate=0,
        applied_then_fail_rate=0,
        reset_rate=0,
        storm_rate=0,
        latency_ms=0,
        mode="combined75",
        max_array_length=500,
    )
    handle.reset()
    return shared_api


@pytest.fixture
def make_api():
    """Start a sandbox with specific settings (stopped after the test): make_api(rate_limit="5/1s")."""
    started = []

    def make(**settings) -> Api:
        settings.setdefault("api_key", KEY)
        settings.setdefault("rate_limit", UNLIMITED)
        settings.setdefault("export_rate_limit", UNLIMITED)
        handle = start_sandbox(SandboxConfig(**settings))
        client = open_api(handle)
        started.append(client)
        return client

    yield make
    for client in started:
        client.http.close()
        client.handle.stop()
