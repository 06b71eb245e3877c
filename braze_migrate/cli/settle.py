"""`braze-migrate settle RUN --delivered|--resend|--check [BATCH ...]`: end the doubt about events and
purchases a run held (braze_migrate/ops/settle.py says how `--check` decides and when it cannot)."""

from __future__ import annotations

import argparse
import json

from braze_migrate.cli.exits import EXIT_OK, EXIT_PENDING
from braze_migrate.cli.options import add_option_flags, holding_state, settings_from_args
from braze_migrate.ops.settle import SettleError, check_in_doubt, settle
from braze_migrate.run.advice import after_settle, render
from braze_migrate.run.credentials import resolve_credentials
from braze_migrate.settings import ConfigError


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("settle", help="decide what became of events/purchases held in doubt by a run")
    p.add_argument("run_id", metavar="RUN", help="the run that held them (`braze-migrate status` lists runs)")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--delivered", nargs="*", type=int, metavar="BATCH",
                     help="Braze has them: record them as acknowledged, never send them (default: every batch)")
    how.add_argument("--resend", nargs="*", type=int, metavar="BATCH",
                     help="Braze does not have them: the next sync sends them once (default: every batch)")
    how.add_argument("--check", nargs="*", type=int, metavar="BATCH",
                     help="read the users back from Braze (/users/export/ids) and settle what the counts decide")
    add_option_flags(p, "settle")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    return p


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args, "settle")
    decision = next(d for d in ("delivered", "resend", "check") if getattr(args, d) is not None)
    batches = getattr(args, decision) or None
    with holding_state(settings, "settle") as (state, ledger):
        try:
            if decision == "check":
                from connectors.braze.export import BrazeExporter

                endpoint, api_key = resolve_credentials(settings)
                report = check_in_doubt(state, ledger, args.run_id, BrazeExporter(endpoint, api_key),
                                        batches=batches)
            else:
                report = settle(state, ledger, args.run_id, decision, batches)
        except SettleError as exc:
            raise ConfigError(str(exc)) from None
    steps = after_settle(report.run_id, str(state), report.undecided, report.counts)
    if args.json:
        print(json.dumps({"run_id": report.run_id, "settled": {str(b): d for b, d in report.settled.items()},
                          "occurrences": report.occurrences, "undecided": report.undecided,
                          "advice": [s.model_dump() for s in steps]}, sort_keys=True))
    else:
        for decision in ("delivered", "resend"):
            done = [b for b, d in report.settled.items() if d == decision]
            if done:
                print(f"run {report.run_id}: batch(es) {', '.join(map(str, done))} settled as {decision}")
        if not report.settled and not report.undecided:
            print(f"run {report.run_id}: nothing held in doubt")
        if report.undecided:
            print(f"run {report.run_id}: batch(es) {', '.join(map(str, report.undecided))} undecided by the "
                  "counts: settle them one way or the other")
            for line in render(steps):
                print(line)
    return EXIT_PENDING if report.undecided else EXIT_OK
