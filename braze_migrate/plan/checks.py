"""The settings a plan's checks depend on, written with the plan so a resumed plan decides the same way.

`rules.json` holds the suspicious-row rules (transforms/suspicious.py) of the run that made the plan, and how
purchases are sent (`purchases_as`: legacy purchase objects, or eCommerce events with `order_source` as their
default `source`), and whether alias objects may create their user; a plan without it (an older plan) gets the defaults: suspicious rows held, purchase objects.
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
        "mode": settings.suspicious, "horizon_year": settings.time_horizon_year, "today": today.isoformat(),
        "purchases_as": settings.purchases_as, "order_source": settings.order_source,
        "create_alias_users": settings.create_alias_users}))


def read_rules(plan_dir: Path) -> Rules:
    path = plan_dir / RULES_FILE
    if not path.exists():
        return Rules()
    data = json.loads(path.read_text())
    return Rules(mode=data["mode"], horizon_year=int(data["horizon_year"]), today=date.fromisoformat(data["today"]))


def read_order_source(plan_dir: Path) -> str | None:
    """The default `source` of the plan's eCommerce events, or None when purchases go as purchase objects."""
    path = plan_dir / RULES_FILE
    data = json.loads(path.read_text()) if path.exists() else {}
    return data.get("order_source", "warehouse") if data.get("purchases_as") == "ecommerce" else None


def read_create_aliases(plan_dir: Path) -> bool:
    """Whether the plan's alias objects may create their user (`--create-alias-users`); an older plan: no."""
    path = plan_dir / RULES_FILE
    return bool(json.loads(path.read_text()).get("create_alias_users", False)) if path.exists() else False
