"""Which night a flow run is about, and a run name that says so.

The *logical date* of a run is the day its source template is filled with (connectors/readiness.py): the `date`
parameter when given; else the run's scheduled time (a manual or event-started run: when it was created) in
the time zone of its deployment's schedule, so the 02:30 Europe/Berlin run of 7 December reads the folder of
7 December whatever the worker's clock says; a run outside a deployment uses the local time zone.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext
from prefect.runtime import flow_run


def logical_date(given: date | str | None) -> date:
    """The run's logical date (see the module)."""
    if given:
        return given if isinstance(given, date) else date.fromisoformat(str(given))
    ctx = FlowRunContext.get()
    run = ctx.flow_run if ctx else None
    when = (run.expected_start_time or run.start_time) if run is not None else None
    if when is None:
        return datetime.now().astimezone().date()
    zone = _schedule_zone(run.deployment_id) if run.deployment_id else None
    return when.astimezone(zone).date() if zone else when.astimezone().date()


def _schedule_zone(deployment_id) -> ZoneInfo | None:
    with get_client(sync_client=True) as client:
        schedules = client.read_deployment(deployment_id).schedules or []
    for s in schedules:
        tz = getattr(s.schedule, "timezone", None)
        if tz:
            return ZoneInfo(tz)
    return None


def run_name(kind: str, day: date | None, state: str | None, run_id: str | None = None) -> str:
    """`sync-2026-12-07-state-20261207T013000-1a2b3c`: kind, logical date, state folder name, run id."""
    parts = [kind, day.isoformat() if day else None, Path(state).name if state else None, run_id]
    return re.sub(r"[^A-Za-z0-9._-]+", "_", "-".join(p for p in parts if p))


def initial_name() -> str:
    """The name a load flow run starts with (before its logical date and run id are known)."""
    params = flow_run.get_parameters() or {}
    day = params.get("date")
    return run_name(flow_run.get_flow_name() or "load", date.fromisoformat(str(day)) if day else None,
                    params.get("state"))


def rename(name: str) -> None:
    """Rename this flow run (the runs list and alerts show the name)."""
    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run is None:
        return
    with get_client(sync_client=True) as client:
        client.update_flow_run(ctx.flow_run.id, name=name)
