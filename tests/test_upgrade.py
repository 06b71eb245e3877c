"""A state folder written by the previous release (0.1.0) is upgraded in place and its next sync sends nothing.

The fixture `tests/fixtures/state-0.1.0.tar.gz` is the state folder release 0.1.0 (commit 433fbc0) left after
`braze-migrate backfill data/samples/day1 --state state-0.1.0 --no-prefect` against the bundled sandbox:
its ledger (no schema version, tables created as that release did), snapshot, memo and committed plan (request
bodies already removed by the default plan retention). The samples hold fake data only.
"""

from __future__ import annotations

import tarfile
import time
from pathlib import Path

from braze_migrate.run.engine import Engine
from braze_migrate.settings import load_settings
from tests.conftest import API_KEY

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "state-0.1.0.tar.gz"
DAY1 = ROOT / "data" / "samples" / "day1"
DAY2 = ROOT / "data" / "samples" / "day2"


def previous_release_state(tmp_path: Path) -> Path:
    with tarfile.open(FIXTURE) as tar:
        tar.extractall(tmp_path, filter="data")
    return tmp_path / "state-0.1.0"


def run(kind: str, source: Path, state: Path, url: str) -> dict:
    engine = Engine(load_settings(state=state))
    try:
        prepared = engine.prepare(kind, str(source))
        engine.apply(prepared, url, API_KEY)
        return engine.finish(prepared, started=time.monotonic())
    finally:
        engine.close()


def sent(summary: dict) -> dict:
    """What a run sent, per dataset, and its data points."""
    return {"data_points": summary["data_points"]["sent"], "requests": summary["requests"],
            **{name: figures["acknowledged"] for name, figures in summary["datasets"].items()}}


def test_a_previous_release_state_folder_resends_nothing_and_syncs_only_the_delta(sandbox, tmp_path):
    state = previous_release_state(tmp_path)
    again = run("sync", DAY1, state, sandbox.url)
    assert again["status"] == "completed"
    assert again["requests"] == 0 and sandbox.stats()["requests"] == 0  # nothing of day 1 is sent again
    day2 = run("sync", DAY2, state, sandbox.url)

    # The same two nights on a state folder the current release wrote from the start.
    sandbox.reset()
    fresh = tmp_path / "fresh"
    run("backfill", DAY1, fresh, sandbox.url)
    expected = run("sync", DAY2, fresh, sandbox.url)
    assert sent(expected)["requests"] > 0
    assert sent(day2) == sent(expected)
