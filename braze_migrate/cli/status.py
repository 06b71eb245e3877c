"""`braze-migrate status`: the ledger of the last runs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from braze_migrate.cli.exits import EXIT_OK
from braze_migrate.cli.options import add_option_flags, settings_from_args
from braze_migrate.run.engine import open_run_ledger
from braze_migrate.settings import ConfigError
from connectors.state.lock import current_holder


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("status", help="the ledger of the last runs")
    add_option_flags(p, "status")
    p.add_argument("--limit", type=int, default=10, help="runs to show (default 10)")
    p.add_argument("--json", action="store_true", help="print the runs as one JSON array")
    return p


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args, "status")
    holder = current_holder(settings.state)
    if settings.ledger_url is None and not (Path(settings.state) / "ledger.sqlite").exists():
        if holder is not None:  # a first run still starting
            print(f"the state folder is in use by {holder.describe()}")
            return EXIT_OK
        raise ConfigError(f"no ledger in {settings.state}: run a backfill first, or pass --state")
    ledger = open_run_ledger(settings)
    try:
        rows = [{"run_id": r.run_id, "kind": r.kind, "source": r.source, "status": r.status,
                 "result": (r.summary or {}).get("status"), **ledger.totals(r.run_id)}
                for r in ledger.runs(limit=args.limit)]
    finally:
        ledger.close()
    if args.json:
        print(json.dumps(rows))
        return EXIT_OK
    print(f"{'run':<24}{'kind':<10}{'state':<11}{'result':<13}{'batches':>8}{'acked':>7}{'requests':>9}"
          f"{'429s':>6}{'in doubt':>9}  source")
    for r in rows:
        print(f"{r['run_id']:<24}{r['kind']:<10}{r['status']:<11}{r['result']!s:<13}{r['batches']:>8}"
              f"{r['acknowledged_batches']:>7}{r['requests']:>9}{r['throttled']:>6}{r['in_doubt_batches']:>9}"
              f"  {r['source']}")
    if holder is not None:
        print(f"the state folder is in use by {holder.describe()}")
    return EXIT_OK
