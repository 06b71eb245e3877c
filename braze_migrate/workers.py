"""`braze-migrate load-worker`: one more worker for the unfinished run of a state folder.

The run itself is started as usual (`braze-migrate backfill|sync SOURCE --state DIR`): it plans, loads as
one of the workers, waits until every batch is final and commits. Each `load-worker`, on this machine or
another one sharing the state folder and the ledger (`BRAZE_MIGRATE_LEDGER_URL`), claims and sends batches
of that run until none is left, then exits. All of them share one rate budget through the ledger.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from braze_migrate.settings import ConfigError, LoadSettings, load_settings

EXIT_OK, EXIT_CONFIG, EXIT_INTERRUPTED = 0, 2, 3
# Settings a worker takes from the run it joins, so every worker loads it the same way.
RUN_SETTINGS = ("rate_limit", "in_doubt", "max_attempts", "max_retry_seconds", "timeout_seconds",
                "retry_backoff_seconds")
POLL_SECONDS = 0.5


def add_parser(subparsers) -> argparse.ArgumentParser:
    """The `load-worker` sub-command."""
    p = subparsers.add_parser(
        "load-worker", help="join the unfinished run of a state folder: claim and send its batches until none is left",
    )
    p.add_argument("--state", help="the run's state folder, on a filesystem all workers share (default ./state)")
    p.add_argument("--concurrency", type=int, help="requests in flight in this worker (default 100)")
    p.add_argument("--wait-for-run", type=float, default=0.0, metavar="SECONDS",
                   help="wait up to this long for a run to be planned (default: do not wait)")
    p.add_argument("--json", action="store_true", help="print this worker's totals as one JSON object")
    return p


def run(args) -> int:
    """Load batches of the unfinished run until none is claimable; exit 0 (nothing to do is fine too), 3 when
    stopped early (a signal, or a claim taken over): the other workers and the run's own command go on."""
    from braze_migrate.applier import ClaimLost, apply_plan
    from braze_migrate.credentials import resolve_credentials
    from braze_migrate.engine import Engine

    settings = load_settings(state=args.state, concurrency=args.concurrency)
    engine = Engine(settings)
    try:
        found = _wait_for_run(engine, args.wait_for_run)
        if found is None:
            _print({"run_id": None, "batches": 0, "note": "no planned run to join"}, args.json)
            return EXIT_OK
        settings = joined_settings(settings, found.settings)
        plan_dir = engine.run_dir(found.run_id) / "plan"
        if not plan_dir.is_dir():
            raise ConfigError(f"the plan of run {found.run_id} is not under {engine.state}: --state must be the "
                              "folder the run uses, on a filesystem every worker shares")
        endpoint, api_key = resolve_credentials(settings)
        stats = apply_plan(found.run_id, plan_dir, engine.ledger, settings, endpoint, api_key, wait=False)
    except ClaimLost as exc:
        print(f"braze-migrate: load-worker stopped: {exc}", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        engine.close()
    _print({"run_id": found.run_id, "worker_id": stats.worker_id, "batches": stats.batches,
            "acknowledged": stats.acknowledged, "pending": stats.pending, "requests": stats.requests,
            "retries": stats.retries, "throttled": stats.throttled, "leases": stats.leases,
            "lease_ms": round(1000 * stats.lease_seconds / max(1, stats.leases), 3),
            "elapsed_s": round(stats.elapsed, 3), "stopped": stats.stopped}, args.json)
    return EXIT_INTERRUPTED if stats.stopped else EXIT_OK


def joined_settings(own: LoadSettings, recorded: dict) -> LoadSettings:
    """This worker's settings with the run's rate limit and in-doubt policy (consistent across workers)."""
    return own.model_copy(update={k: recorded[k] for k in RUN_SETTINGS if k in recorded})


def _wait_for_run(engine, seconds: float):
    """The unfinished run once it is planned (`planning` means its batches are not recorded yet)."""
    deadline = time.monotonic() + seconds
    while True:
        found = engine.ledger.unfinished_run()
        if found is not None and found.status != "planning":
            return found
        if time.monotonic() >= deadline:
            return None
        time.sleep(POLL_SECONDS)


def _print(totals: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(totals, sort_keys=True))
    elif totals.get("run_id") is None:
        print(f"load-worker: {totals['note']}")
    else:
        print(f"load-worker {totals['worker_id']}: run {totals['run_id']}, {totals['batches']} batches "
              f"({totals['acknowledged']} acknowledged, {totals['pending']} pending), {totals['requests']} requests, "
              f"{totals['throttled']} throttled, {totals['leases']} budget leases")


def main(argv: list[str] | None = None) -> int:
    """`python -m braze_migrate.workers [options]`: the same as `braze-migrate load-worker`."""
    parser = argparse.ArgumentParser(prog="braze-migrate")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    args = parser.parse_args(["load-worker", *(sys.argv[1:] if argv is None else argv)])
    try:
        return run(args)
    except ConfigError as exc:
        print(f"braze-migrate: error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        print("braze-migrate: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
