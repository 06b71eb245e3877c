"""`braze-migrate plan`: a dry run — what a run would send and cost, with the payloads written out."""

from __future__ import annotations

import argparse
import json

from braze_migrate.cli.exits import EXIT_OK
from braze_migrate.cli.options import add_option_flags, settings_from_args
from braze_migrate.cli.progress import showing
from braze_migrate.cli.sources import add_source_arguments, require_source
from braze_migrate.reporting.terminal import render_plan
from braze_migrate.run.dryrun import dry_run


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("plan", help="dry run: what would be sent and what it would cost; sends nothing")
    add_source_arguments(p)
    add_option_flags(p, "plan")
    p.add_argument("--out", help="folder for the planned payloads (default STATE/plans/<time>)")
    p.add_argument("--json", action="store_true", help="print the plan's costs as one JSON object")
    return p


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args, "plan")
    require_source(args.source, args.mapping)
    with showing():
        result = dry_run(settings, args.source, out=args.out, mapping=args.mapping)
    print(json.dumps(result, sort_keys=True) if args.json else render_plan(result))
    return EXIT_OK
