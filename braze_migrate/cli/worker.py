"""`braze-migrate load-worker`: one more worker for the unfinished run of a
state folder; the work itself is `braze_migrate.run.workers.join_run`."""

from __future__ import annotations

import argparse
import json
import sys

from braze_migrate.cli.exits import EXIT_INTERRUPTED, EXIT_OK
from braze_migrate.cli.options import add_option_flags, settings_from_args
from braze_migrate.run.public import ClaimLost
from braze_migrate.run.workers import join_run
from connectors.states import BatchState


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "load-worker", help="join the unfinished run of a state folder: claim and send its batches until none is left",
    )
    add_option_flags(p, "load-worker")
    p.add_argument("--wait-for-run", type=float, default=0.0, metavar="SECONDS",
                   help="wait up to this long for a run to be planned (default: do not wait)")
    p.add_argument("--json", action="store_true", help="print this worker's totals as one JSON object")
    return p


def run(args: argparse.Namespace) -> int:
    """Exit 0 when no batch is left to claim (nothing to do is fine too), 3 when stopped early (a signal, or
    a claim taken over): the other workers and the run's own command go on."""
    settings = settings_from_args(args, "load-worker")

    def waiting() -> None:
        print(f"load-worker: waiting up to {args.wait_for_run:g} s for a run to be planned in {settings.state}",
              file=sys.stderr, flush=True)

    try:
        totals = join_run(settings, args.wait_for_run, on_wait=waiting)
    except ClaimLost as exc:
        print(f"braze-migrate: load-worker stopped: {exc}", file=sys.stderr)
        return EXIT_INTERRUPTED
    if args.json:
        print(json.dumps(totals, sort_keys=True))
    elif totals.get("run_id") is None:
        print(f"load-worker: {totals['note']}")
    else:
        print(f"load-worker {totals['worker_id']}: run {totals['run_id']}, {totals['batches']} batches "
              f"({totals[BatchState.ACKNOWLEDGED]} acknowledged, {totals[BatchState.PENDING]} pending), {totals['requests']} requests, "
              f"{totals['throttled']} throttled, {totals['leases']} budget leases")
    return EXIT_INTERRUPTED if totals.get("stopped") else EXIT_OK

