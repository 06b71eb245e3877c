"""The plan's log line in a Prefect run (flows/artifacts.py plan_line): what loading costs at the rate limit, true
for every size of plan (#26 item 9: a tiny plan said "at least 0:00 of loading")."""

from __future__ import annotations

import pytest

from flows.artifacts import loading_time


@pytest.mark.parametrize(("batches", "requests", "seconds", "text"), [
    (0, 3000, 3, ": nothing to send"),
    (1, 3000, 3, "; at 3000/3s that is under a second of loading"),
    (9, 3000, 3, "; at 3000/3s that is under a second of loading"),  # was "at least 0:00"
    (999, 1000, 1, "; at 1000/1s that is under a second of loading"),
    (1000, 1000, 1, "; at 1000/1s that is at least 0:01 of loading"),
    (1999, 1000, 1, "; at 1000/1s that is at least 0:01 of loading"),  # a lower bound: never rounded up
    (80, 20, 1, "; at 20/1s that is at least 0:04 of loading"),
    (90_000, 3000, 3, "; at 3000/3s that is at least 1:30 of loading"),
    (4_000_000, 3000, 3, "; at 3000/3s that is at least 1:06:40 of loading"),
])
def test_loading_time_is_a_true_lower_bound_for_every_size(batches, requests, seconds, text):
    assert loading_time(batches, requests, seconds) == text
    assert "0:00" not in text


def test_a_tiny_plans_line_says_under_a_second(monkeypatch, tmp_path):
    from types import SimpleNamespace

    from braze_migrate.run import engine, public
    from braze_migrate.settings import load_settings
    from flows.artifacts import plan_line

    class Ledger:
        def totals(self, run_id):
            return {"batches": 9, "acknowledged_batches": 0, "objects": 412}

        def close(self):
            pass

    monkeypatch.setattr(engine, "open_run_ledger", lambda settings: Ledger())
    monkeypatch.setattr(public, "plan_complete", lambda plan_dir: True)
    prepared = SimpleNamespace(run_id="R1", plan_dir=tmp_path, resumed=False, unchanged=None)
    line = plan_line(prepared, load_settings(state=tmp_path))
    assert line == ("run R1 planned: 9 batches (412 objects), 9 to send; at 3000/3s that is under a second of "
                    "loading")
