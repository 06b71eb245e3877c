"""The settings a plan's checks depend on, written with the plan so a resumed plan decides the same way.

`rules.json` holds the suspicious-row rules (transforms/suspicious.py) of the run that made the plan; a
plan without it (a dry run, an older plan) gets the defaults, which hold suspicious rows.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

from braze_migrate.settings import LoadSettings
from transforms.suspicious import Rules

RULES_FILE = "rules.json"


def write_rules(plan_dir: Path, settings: LoadSettings, today: date) -> None:
    plan_dir.mkdir(parents=True, exist_ok=True)
    (plan_dir / RULES_FILE).write_text(json.dumps({
        "mode": settings.suspicious, "horizon_year": settings.time_horizon_year, "today": today.isoformat()}))


def read_rules(plan_dir: Path) -> Rules:
    path = plan_dir / RULES_FILE
    if not path.exists():
        return Rules()
    data = json.loads(path.read_text())
    return Rules(mode=data["mode"], horizon_year=int(data["horizon_year"]), today=date.fromisoformat(data["today"]))
