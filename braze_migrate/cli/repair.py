"""`braze-migrate repair`: rebuild a damaged snapshot from the ledger and the committed runs' plans."""

from __future__ import annotations

import argparse
import json

from braze_migrate.cli.exits import EXIT_OK
from braze_migrate.cli.options import add_option_flags, existing_state, settings_from_args
from braze_migrate.ops.repair import repair_state
from braze_migrate.run.engine import open_run_ledger
from braze_migrate.settings import ConfigError
from connectors.state.ledger_base import LedgerUnavailable
from connectors.state.lock import StateInUse, run_lock


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "repair", help="rebuild a damaged snapshot from the ledger and the committed plans (nothing is sent)")
    add_option_flags(p, "repair")
    p.add_argument("--json", action="store_true", help="print what was rebuilt as one JSON object")
    return p


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args, "repair")
    state = existing_state(settings)
    url = settings.ledger_url.get_secret_value() if settings.ledger_url else None
    try:
        with run_lock(state, "repair", ledger_url=url):  # never under a live run
            ledger = open_run_ledger(settings)
            try:
                report = repair_state(state, ledger)
            finally:
                ledger.close()
    except (StateInUse, LedgerUnavailable) as exc:
        raise ConfigError(str(exc)) from None
    if args.json:
        print(json.dumps({"runs": report.runs, "problems": report.problems, "rows": report.rows,
                          "kept_aside": report.kept_aside}, sort_keys=True))
        return EXIT_OK
    found = "; ".join(report.problems) if report.problems else "no damage found"
    print(f"repaired {state}: {found}")
    print(f"  rebuilt from {len(report.runs)} committed run(s): "
          + ", ".join(f"{name} {rows} rows" for name, rows in sorted(report.rows.items()) if name.endswith(".parquet")))
    if report.kept_aside:
        print(f"  the damaged snapshot is in {report.kept_aside} (it may hold personal data: remove it once checked)")
    return EXIT_OK
