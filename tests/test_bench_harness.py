"""`python -m bench` works end to end on tiny sizes (no assertion on speed: CI machines are noisy)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

import bench.__main__ as bench_main
from bench import table
from bench.data import ensure_inputs
from bench.state import write_acknowledged_state
from braze_migrate.engine import Engine
from braze_migrate.pipeline import ledger_rows
from braze_migrate.planner import build_plan
from braze_migrate.settings import load_settings
from connectors.state.ledger import Ledger

USERS = 1500


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("bench")
    args = bench_main.parse(["--quick", "--users", str(USERS), "--requests", "20", "--sustain-seconds", "4",
                             "--no-write", "--out", str(out)])
    return bench_main.run(args)


def test_every_section_reports(results):
    for key in ("e2e_backfill", "plan", "memory", "e2e_sync", "history", "e2e_history", "client_minimal",
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


def test_direct_state_equals_a_committed_backfill(tmp_path):
    """The fast 10M state writer leaves the same snapshot as a real backfill acknowledged in full."""
    inputs = ensure_inputs(800, tmp_path / "data")
    write_acknowledged_state(inputs.day1, tmp_path / "direct", users_per_partition=300)
    real = tmp_path / "real"
    engine = Engine(load_settings(state=real, users_per_partition=300))
    prepared = engine.prepare("backfill", str(inputs.day1))
    # A first load is planned while it loads (braze_migrate/pipeline.py): plan and record it here, send nothing.
    build_plan(str(inputs.day1), engine.snapshot, prepared.plan_dir, batch_size=75, batch_mode="combined",
               resend_in_doubt=False, users_per_partition=300, resume=True,
               on_unit=lambda _, batches: engine.ledger.add_batches(prepared.run_id, ledger_rows(batches)))
    acknowledge_everything(engine.ledger, prepared.run_id)
    engine.finish(prepared, started=0.0)
    engine.close()
    direct_parts = sorted(p.name for p in (tmp_path / "direct" / "snapshot" / "users").glob("*.parquet"))
    real_parts = sorted(p.name for p in (real / "snapshot" / "users").glob("*.parquet"))
    assert direct_parts == real_parts and len(real_parts) == 3
    for name in real_parts:
        direct = pl.read_parquet(tmp_path / "direct" / "snapshot" / "users" / name)
        committed = pl.read_parquet(real / "snapshot" / "users" / name)
        assert direct.equals(committed.select(direct.columns)), name
    assert (tmp_path / "direct" / "snapshot" / "meta.json").read_text() == (real / "snapshot" / "meta.json").read_text()


def acknowledge_everything(ledger: Ledger, run_id: str) -> None:
    ledger.db.execute("UPDATE batches SET status='acknowledged' WHERE run_id=?", (run_id,))


def test_quick_cli_parses_and_rejects_unknown_sections(tmp_path):
    with pytest.raises(SystemExit):
        bench_main.run(bench_main.parse(["--quick", "--only", "nope", "--out", str(tmp_path)]))
    assert bench_main.sizes_of(bench_main.parse(["--quick"])).users < bench_main.DEFAULT.users
    assert Path(bench_main.OUT).name == "out"
