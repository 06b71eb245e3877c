"""`braze-migrate`: backfill, sync, plan, verify, status, load-worker, emit-ready, and the local Braze sandbox.

Configuration problems end in one line on stderr (exit 2), never a traceback; a run that left anything
pending exits 1 and prints the command that resumes it.

To add a sub-command: a module in cli/ with `add_parser(subparsers)` and `run(args) -> int`, listed in
`SUBCOMMANDS` below; its option flags come from `cli.options.add_option_flags(parser, "<name>")` (declare
the command in the option's `commands` in braze_migrate/settings.py).
"""

from __future__ import annotations

import argparse
import os
import sys

from braze_migrate.cli import (
    emit_ready,
    load,
    plan,
    repair,
    sandbox,
    settle,
    status,
    undelete,
    verify,
    worker,
)
from braze_migrate.cli.exits import EXIT_CONFIG, EXIT_DAMAGED, EXIT_INTERRUPTED, EXIT_UNUSABLE
from braze_migrate.errors import user_failure
from braze_migrate.settings import ConfigError

PREFECT_DEFAULTS = {
    # A fresh PREFECT_HOME migrates its database for ~30 s: the default 20 s start-up timeout fails the first run.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
}
# name → (module with run(args), how to add its parser)
SUBCOMMANDS = {
    "backfill": (load, lambda sub: load.add_parser(sub, "backfill")),
    "sync": (load, lambda sub: load.add_parser(sub, "sync")),
    "plan": (plan, plan.add_parser),
    "status": (status, status.add_parser),
    "verify": (verify, verify.add_parser),
    "load-worker": (worker, worker.add_parser),
    "repair": (repair, repair.add_parser),
    "settle": (settle, settle.add_parser),
    "undelete": (undelete, undelete.add_parser),
    "sandbox": (sandbox, sandbox.add_parser),
    "emit-ready": (emit_ready, emit_ready.add_parser),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="braze-migrate", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for _, add in SUBCOMMANDS.values():
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    for k, v in PREFECT_DEFAULTS.items():
        os.environ.setdefault(k, v)
    args = build_parser().parse_args(argv)
    try:
        return SUBCOMMANDS[args.command][0].run(args)
    except ConfigError as exc:
        print(f"braze-migrate: error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        print("braze-migrate: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        failure = user_failure(exc)
        if failure is None:
            raise
        kind, msg = failure
        print(f"braze-migrate: error: {msg}", file=sys.stderr)
        return {"damaged": EXIT_DAMAGED, "unusable": EXIT_UNUSABLE}.get(kind, EXIT_CONFIG)


if __name__ == "__main__":
    sys.exit(main())
