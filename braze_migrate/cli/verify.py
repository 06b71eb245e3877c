"""`braze-migrate verify SOURCE`: sample users of an export and compare what Braze holds with it.

Exit 0 when every sampled user matches, 1 when any differs; configuration errors are ConfigError lines
(exit 2, printed by cli.main).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from braze_migrate.cli.options import add_option_flags, settings_from_args
from braze_migrate.ops import verify as logic
from braze_migrate.run.credentials import resolve_credentials
from braze_migrate.run.public import EXPORT_PROBE, check_credentials
from braze_migrate.settings import ConfigError

EXIT_OK, EXIT_MISMATCH = 0, 1


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the `verify` subcommand to the main CLI's subparsers."""
    p = subparsers.add_parser("verify", help="sample users of an export and compare what Braze holds with it")
    p.add_argument("source", help="the export that was loaded: folder, object-store URI or mapping file")
    p.add_argument("--mapping", metavar="FILE", help="the mapping file the load used (docs/sources.md)")
    add_option_flags(p, "verify")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object on stdout")
    p.add_argument("--no-prefect", action="store_true", help="run without Prefect (no UI record)")
    return p


def run(args: argparse.Namespace) -> int:
    """Run the verification (as the Prefect flow unless --no-prefect) and print its report."""
    settings = settings_from_args(args, "verify")
    state = str(settings.state)
    endpoint, api_key = resolve_credentials()
    if "://" not in args.source and not Path(args.source).exists():
        raise ConfigError(f"source {args.source!r} does not exist: pass the export folder that was loaded")
    # An unreachable endpoint or a refused key: one line now, not retries for minutes.
    check_credentials(endpoint, api_key, path="/users/export/ids", body=EXPORT_PROBE)
    if args.no_prefect:
        report = logic.verify(args.source, state, settings.sample, endpoint=endpoint, api_key=api_key,
                              since=logic.since_days(settings.event_window_days), mapping=args.mapping).to_dict()
    else:
        report = _run_flow(args, state, settings.sample, settings.event_window_days)
    if args.json:
        print(json.dumps(report, sort_keys=True))
    else:
        print(logic.render_text(_report(report)))
    return EXIT_OK if report["mismatched"] == 0 else EXIT_MISMATCH


def _run_flow(args: argparse.Namespace, state: str, sample: int, event_window_days: int | None) -> dict:
    """The `verify` flow, recorded in Prefect; its final state carries the report."""
    from flows.verify import verify

    final = verify(source=args.source, mapping=args.mapping, state=state,
                   verify={"sample": sample, "event_window_days": event_window_days}, return_state=True)
    report = final.result(raise_on_failure=False)
    if isinstance(report, logic.MismatchesFound):
        return report.report
    if isinstance(report, BaseException):
        raise report
    return report


def _report(data: dict) -> logic.VerifyReport:
    return logic.VerifyReport(**{**data, "mismatches": [logic.Mismatch(**m) for m in data["mismatches"]]})
