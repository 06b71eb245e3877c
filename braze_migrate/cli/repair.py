"""`braze-migrate repair`: rebuild a damaged snapshot from the ledger and the committed runs' plans."""

from __future__ import annotations

import argparse
import json

from braze_migrate.cli.exits import EXIT_OK
from braze_migrate.cli.options import add_option_flags, holding_state, settings_from_args
from braze_migrate.ops.repair import repair_state


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "repair", help="rebuild a damaged snapshot from the ledger and the committed plans (nothing is sent)")
    add_option_flags(p, "repair")
    p.add_argument("--json", action="store_true", help="print what was rebuilt as one JSON object")
    return p


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args, "repair")
    with holding_state(settings, "repair") as (state, ledger):  # never under a live run
        report = repair_state(state, ledger)
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
