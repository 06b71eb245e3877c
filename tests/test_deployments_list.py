"""What the Prefect UI's deployments list shows without hovering (#26 item 10): it prints a cron schedule without
its time zone (only its tooltip has it) and only the tags that fit its column, the first one at least; so the
nightly's first tag is its schedule's time zone, short enough to fit (docs/img/operator-deployments-list*.png)."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def test_a_scheduled_deployments_first_tag_is_its_schedules_time_zone():
    deployments = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]
    scheduled = [d for d in deployments if d.get("schedules")]
    assert scheduled
    for d in scheduled:
        zones = {s["timezone"] for s in d["schedules"]}
        assert len(zones) == 1 and d["tags"][0] == zones.pop(), d["name"]
        assert len(d["tags"][0]) <= 16, "a longer first tag does not fit the list's column (the UI hides it)"
