"""What the flows and the CLI may use of the rooms below `run` (plan, load, commit): the types their
parameters and results carry, and the few functions they call directly. Everything else of those rooms is
reached through the stage functions (stages.py); import-linter keeps flows/ and braze_migrate/cli/ from
importing plan, load or commit themselves (pyproject.toml, tool.importlinter)."""

from __future__ import annotations

from braze_migrate.load.applier import ClaimLost
from braze_migrate.load.preflight import EXPORT_PROBE, check_credentials
from braze_migrate.plan.guards import GuardReport, render_text
from braze_migrate.plan.planner import UnitsRunner, plan_complete, plan_unit_to_file

__all__ = ["EXPORT_PROBE", "ClaimLost", "GuardReport", "UnitsRunner", "check_credentials", "plan_complete", "plan_unit_to_file",
           "render_text"]
