"""`python -m bench` works end to end on tiny sizes (no assertion on speed: CI machines are noisy)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import polars as pl
import pytest

import bench.__main__ as bench_main
from bench import table
from bench.data import ensure_inputs
from bench.state import write_acknowledged_state
from braze_migrate.plan.planner import build_plan
from connectors.state.snapshot import Snapshot

USERS = 1500


@pytest.fixture(scope="module")
def results(tmp_path_factory, pg_server) -> dict:
    os.environ["BRAZE_MIGRATE_BENCH_PG"] = pg_server  # the SQL section reads from the tests' PostgreSQL
    out = tmp_path_factory.mktemp("bench")
    args = bench_main.parse(["--quick", "--users", str(USERS), "--requests", "20", "--sustain-seconds", "4",
                             "--no-write", "--out", str(out)])
    return bench_main.run(args)


def test_every_section_reports(results):
    for key in ("e2e_backfill", "plan", "memory", "e2e_sync", "history", "e2e_history", "sql", "loader", "client_minimal",
                "client_sandbox", "sustain"):
        assert key in results, key
    json.dumps(results, default=str)
    rendered = table.render(results)
    assert rendered.count("\n| ") >= 16 and "machine:" in rendered


def test_history_plans_are_packed_to_the_minimum(results):
    for case in results["history"]["cases"].values():
        assert case["batches"] <= case["minimum_batches"], case
    assert results["e2e_history"]["status"] == "completed"
    assert results["e2e_backfill"]["planned_batches"] == results["e2e_backfill"]["minimum_batches"]


def test_the_sql_readers_read_every_row(results):
    sql = results["sql"]
    for kind, runs in sql["runs"].items():
        assert all(run["rows"] == sql["rows"] for run in runs), kind
    assert sql["big"]["rows"] == sql["big_rows"]


def test_the_loader_section_acknowledges_every_request(results):
    loader = results["loader"]
    assert loader["status"] == "completed" and loader["acknowledged"] == loader["requests"] > 0
    assert loader["cpu_ms_per_request"] > 0


def test_plans_agree_with_the_naive_plan(results):
    plan = results["plan"]
    assert plan["same_pairs"], plan
    assert plan["changed_pairs"] > 0


def test_loads_complete_and_count_requests(results):
    assert results["e2e_backfill"]["status"] == "completed"
    assert results["e2e_sync"]["status"] == "completed"
    assert results["e2e_backfill"]["requests"] == pytest.approx(USERS / 75, abs=2)
    for key in ("client_minimal", "client_sandbox"):
        assert all(case["cpu_ms_per_request"] > 0 for case in results[key]["cases"].values())
    assert results["sustain"]["acknowledged"] == results["sustain"]["batches"]


def test_memory_is_measured_in_a_child(results):
    (case,) = results["memory"].values()
    assert case["peak_rss_bytes"] >= case["rss_after_imports_bytes"] > 0
    assert case["phases"]


def test_the_bench_state_is_a_committed_backfill(tmp_path):
    """The acknowledged state the plan benchmarks start from is what a backfill leaves: snapshot, contract and
    memo; planning the same export against it sends nothing and skips every user."""
    inputs = ensure_inputs(800, tmp_path / "data")
    state = tmp_path / "state"
    assert write_acknowledged_state(inputs.day1, state, users_per_partition=300) == 3
    assert len(list((state / "snapshot" / "users").glob("*.parquet"))) == 3
    assert pl.read_parquet(state / "snapshot" / "types.parquet").height > 0
    assert any((state / "seen").rglob("part-*.parquet"))
    info = build_plan(str(inputs.day1), Snapshot(state), tmp_path / "plan", batch_size=75, batch_mode="combined",
                      resend_in_doubt=False, users_per_partition=300)
    assert info.batches == 0
    assert sum(json.loads(m.read_text())["unchanged"] for m in (tmp_path / "plan" / "units").glob("*.json")) == 800


def test_quick_cli_parses_and_rejects_unknown_sections(tmp_path):
    with pytest.raises(SystemExit):
        bench_main.run(bench_main.parse(["--quick", "--only", "nope", "--out", str(tmp_path)]))
    assert bench_main.sizes_of(bench_main.parse(["--quick"])).users < bench_main.DEFAULT.users
    assert Path(bench_main.OUT).name == "out"
