"""`braze-migrate`: backfill, sync, plan, verify, status, and the local Braze sandbox.

Configuration problems end in one line on stderr (exit 2), never a traceback; a run that left anything
pending exits 1 and prints the command that resumes it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from braze_migrate.settings import ConfigError

EXIT_OK, EXIT_PENDING, EXIT_CONFIG, EXIT_INTERRUPTED = 0, 1, 2, 3

PREFECT_DEFAULTS = {
    # A fresh PREFECT_HOME migrates its database for ~30 s: the default 20 s start-up timeout fails the first run.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
}


def _load_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="export folder, object-store URI (s3://, gs://, az://) or mapping file")
    _mapping_option(p)
    p.add_argument("--state", help="state folder (default ./state or BRAZE_MIGRATE_STATE)")
    p.add_argument("--rate-limit", help="requests per period, e.g. 3000/3s (Braze's default for /users/track)")
    p.add_argument("--batch-size", type=int, help="objects per request (default 75)")
    p.add_argument("--batch-mode", choices=("combined", "per_array"),
                   help="batch size counts all arrays together (default) or each array (legacy contracts)")
    p.add_argument("--in-doubt", choices=("skip", "resend"),
                   help="events/purchases whose request may have landed: hold as pending (skip, default) or resend")
    p.add_argument("--concurrency", type=int, help="requests in flight at once (default 100)")
    p.add_argument("--json", action="store_true", help="print the run summary as one JSON object on stdout")
    p.add_argument("--no-prefect", action="store_true", help="run the same steps without Prefect (no UI record)")


def _mapping_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mapping", metavar="FILE",
                   help="mapping file for a folder or URI source: where each dataset is and how its columns "
                        "map onto the export contract (docs/sources.md)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="braze-migrate", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _load_options(sub.add_parser("backfill", help="load an export's history into Braze"))
    _load_options(sub.add_parser("sync", help="send only what changed since the last acknowledged load"))
    plan = sub.add_parser("plan", help="dry run: what would be sent and what it would cost; sends nothing")
    plan.add_argument("source")
    _mapping_option(plan)
    plan.add_argument("--state")
    plan.add_argument("--batch-size", type=int)
    plan.add_argument("--batch-mode", choices=("combined", "per_array"))
    plan.add_argument("--out", help="folder for the planned payloads (default STATE/plans/<time>)")
    plan.add_argument("--json", action="store_true")
    status = sub.add_parser("status", help="the ledger of the last runs")
    status.add_argument("--state")
    status.add_argument("--limit", type=int, default=10)
    status.add_argument("--json", action="store_true")
    from braze_migrate import verify_cli

    verify_cli.add_parser(sub)
    from braze_migrate import workers

    workers.add_parser(sub)
    sandbox = sub.add_parser("sandbox", help="run the local Braze-compatible sandbox server (package braze-sandbox)")
    try:
        from braze_sandbox import add_cli_arguments
    except ImportError:  # the sandbox is its own distribution (./sandbox); production installs leave it out
        sandbox.add_argument("rest", nargs=argparse.REMAINDER)
    else:
        add_cli_arguments(sandbox)
    return parser


def main(argv: list[str] | None = None) -> int:
    for k, v in PREFECT_DEFAULTS.items():
        os.environ.setdefault(k, v)
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except ConfigError as exc:
        print(f"braze-migrate: error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        print("braze-migrate: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        from braze_migrate.errors import user_message

        msg = user_message(exc)
        if msg is None:
            raise
        print(f"braze-migrate: error: {msg}", file=sys.stderr)
        return EXIT_CONFIG


def _dispatch(args) -> int:
    if args.command in ("backfill", "sync"):
        return _load(args)
    if args.command == "plan":
        return _plan(args)
    if args.command == "status":
        return _status(args)
    if args.command == "verify":
        from braze_migrate import verify_cli

        return verify_cli.run(args)
    if args.command == "sandbox":
        try:
            from braze_sandbox import run_cli
        except ImportError:
            raise ConfigError("the Braze sandbox is not installed: `pip install ./sandbox` from a checkout "
                              "(`make demo` and `make test` install it)") from None

        return run_cli(args)
    if args.command == "load-worker":
        from braze_migrate import workers

        return workers.run(args)
    raise AssertionError(args.command)


def _settings(args):
    from braze_migrate.settings import load_settings

    return load_settings(
        state=getattr(args, "state", None), rate_limit=getattr(args, "rate_limit", None),
        batch_size=getattr(args, "batch_size", None), batch_mode=getattr(args, "batch_mode", None),
        in_doubt=getattr(args, "in_doubt", None), concurrency=getattr(args, "concurrency", None),
    )


def _load(args) -> int:
    from braze_migrate.credentials import resolve_credentials
    from braze_migrate.engine import Engine
    from braze_migrate.preflight import check_credentials

    settings = _settings(args)
    endpoint, api_key = resolve_credentials(settings)
    _require_source(args.source, args.mapping)
    engine = Engine(settings)
    try:
        prepared = engine.prepare(args.command, args.source, mapping=args.mapping)
        todo = sum(1 for s in engine.ledger.batch_statuses(prepared.run_id).values() if s in ("planned", "claimed", "sending"))
    finally:
        engine.close()
    if todo:
        check_credentials(endpoint, api_key)
    summary = _run_flow(args, settings) if not args.no_prefect else _run_inline(args, settings, endpoint, api_key)
    _print_summary(summary, args.json)
    return {"completed": EXIT_OK, "incomplete": EXIT_PENDING}.get(summary["status"], EXIT_INTERRUPTED)


def _run_inline(args, settings, endpoint: str, api_key: str) -> dict:
    """The flow's steps without Prefect: same engine, same ledger."""
    from braze_migrate.engine import Engine

    started = time.monotonic()
    engine = Engine(settings)
    try:
        prepared = engine.prepare(args.command, args.source, mapping=args.mapping)
        engine.apply(prepared, endpoint, api_key)
        return engine.finish(prepared, started=started)
    finally:
        engine.close()


def _run_flow(args, settings) -> dict:
    """Run the Prefect flow (local mode unless PREFECT_API_URL points at a server); read its summary back."""
    from flows.load import backfill, sync

    flow = backfill if args.command == "backfill" else sync
    try:
        state = flow(
            source=args.source, mapping=args.mapping, state=str(settings.state), rate_limit=settings.rate_limit,
            batch_size=settings.batch_size, batch_mode=settings.batch_mode, in_doubt=settings.in_doubt,
            concurrency=settings.concurrency, return_state=True,
        )
    except Exception as exc:
        if not type(exc).__module__.startswith(("prefect", "httpx", "httpcore")):
            raise
        raise ConfigError(
            f"Prefect could not run the flow ({type(exc).__name__}): point PREFECT_API_URL at a running server, "
            "raise PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, or pass --no-prefect; the plan is kept, "
            "so the same command resumes it"
        ) from None
    summary = _summary_from_state(state, settings)
    if summary is None:
        state.result()  # re-raises the flow's own error (configuration errors become one line in main)
        raise RuntimeError("the flow ended without a summary")
    return summary


def _summary_from_state(state, settings) -> dict | None:
    from braze_migrate.engine import open_run_ledger

    ledger = open_run_ledger(settings)
    try:
        runs = ledger.runs(limit=1)
        return runs[0].summary if runs and runs[0].summary else None
    finally:
        ledger.close()


def _print_summary(summary: dict, as_json: bool) -> None:
    from braze_migrate.report import render_text

    if as_json:
        print(json.dumps(summary, sort_keys=True))
    else:
        print(render_text(summary))


def _require_source(source: str, mapping: str | None = None) -> None:
    """Refuse a missing source or mapping file and check the mapping file's own content now, before Prefect
    starts; its columns are checked against the data when the run plans."""
    from connectors.mapping import load_mapping
    from connectors.objectstore import scheme_of
    from connectors.sources import SourceError, is_mapping_file

    try:
        remote = scheme_of(source) is not None
    except SourceError as exc:
        raise ConfigError(str(exc)) from None
    if not remote and not Path(source).exists():
        raise ConfigError(f"source {source!r} does not exist: pass an export folder (data/samples/day1), "
                          "an object-store URI (s3://bucket/prefix/) or a mapping file (acme.yaml)")
    if mapping is not None and not Path(mapping).is_file():
        raise ConfigError(f"mapping file {mapping!r} does not exist")
    if mapping is not None and is_mapping_file(source):
        raise ConfigError(f"{source} is itself a mapping file: drop --mapping")
    if mapping is not None or is_mapping_file(source):
        load_mapping(mapping or source)


def _plan(args) -> int:
    from braze_migrate.dryrun import dry_run

    settings = _settings(args)
    _require_source(args.source, args.mapping)
    result = dry_run(settings, args.source, out=args.out, mapping=args.mapping)
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        from braze_migrate.dryrun import render_text

        print(render_text(result))
    return EXIT_OK


def _status(args) -> int:
    from braze_migrate.engine import open_run_ledger

    settings = _settings(args)
    if settings.ledger_url is None and not (Path(settings.state) / "ledger.sqlite").exists():
        raise ConfigError(f"no ledger in {settings.state}: run a backfill first, or pass --state")
    ledger = open_run_ledger(settings)
    try:
        runs = ledger.runs(limit=args.limit)
        rows = []
        for r in runs:
            t = ledger.totals(r.run_id)
            rows.append({"run_id": r.run_id, "kind": r.kind, "source": r.source, "status": r.status,
                         "result": (r.summary or {}).get("status"), **t})
    finally:
        ledger.close()
    if args.json:
        print(json.dumps(rows))
    else:
        print(f"{'run':<24}{'kind':<10}{'state':<11}{'result':<13}{'batches':>8}{'acked':>7}{'requests':>9}"
              f"{'429s':>6}{'in doubt':>9}  source")
        for r in rows:
            print(f"{r['run_id']:<24}{r['kind']:<10}{r['status']:<11}{r['result']!s:<13}{r['batches']:>8}"
                  f"{r['acknowledged_batches']:>7}{r['requests']:>9}{r['throttled']:>6}{r['in_doubt_batches']:>9}"
                  f"  {r['source']}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
