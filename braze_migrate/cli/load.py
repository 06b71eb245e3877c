"""`braze-migrate backfill|sync SOURCE`: run the load flow (or, with --no-prefect, the same stages inline)
and print its summary. A bad source fails here in seconds, before Prefect starts; a wrong key or endpoint
when the first batch is ready to go (braze_migrate/load/preflight.py), so a run with nothing to send sends nothing."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date, datetime

from braze_migrate.cli.exits import EXIT_HELD, EXIT_INTERRUPTED, EXIT_OK, EXIT_PENDING
from braze_migrate.cli.options import add_option_flags, settings_from_args
from braze_migrate.cli.progress import showing
from braze_migrate.cli.sources import add_source_arguments, require_source
from braze_migrate.reporting.terminal import render_text
from braze_migrate.run import stages
from braze_migrate.run.advice import next_line
from braze_migrate.run.credentials import resolve_credentials
from braze_migrate.settings import ConfigError, LoadSettings, sections_of
from braze_migrate.summary import RunStatus, RunSummary, RunUnfinished
from connectors import readiness
from connectors.errors import SourceError

COMMANDS = {"backfill": "load an export's history into Braze",
            "sync": "send only what changed since the last acknowledged load"}
EXIT_CODES = {RunStatus.COMPLETED: EXIT_OK, RunStatus.INCOMPLETE: EXIT_PENDING,
              RunStatus.INTERRUPTED: EXIT_INTERRUPTED, RunStatus.HELD: EXIT_HELD}


def add_parser(subparsers, command: str) -> argparse.ArgumentParser:
    p = subparsers.add_parser(command, help=COMMANDS[command])
    add_source_arguments(p)
    add_option_flags(p, command)
    p.add_argument("--date", type=_day, metavar="YYYY-MM-DD",
                   help="the logical date a templated source is filled with (s3://b/braze/{date:%%Y-%%m-%%d}/; "
                        "tokens {date}, {yesterday}); default: today")
    p.add_argument("--json", action="store_true", help="print the run summary as one JSON object on stdout")
    p.add_argument("--no-prefect", action="store_true", help="run the same stages without Prefect (no UI record)")
    return p


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args, args.command)
    resolve_credentials(settings)  # missing settings: one line now, before reading the export
    try:
        source = readiness.resolve(args.source, args.date or datetime.now().astimezone().date())
    except SourceError as exc:
        raise ConfigError(str(exc)) from None
    if not settings.ready_marker:  # with a marker the folder may not exist yet: the run waits for it
        require_source(source, args.mapping)
    with showing():  # on stderr: a bar on a terminal, periodic lines elsewhere; stdout keeps --json clean
        if args.no_prefect:
            summary = stages.run_load(args.command, source, args.mapping, settings)
        else:
            summary = run_flow(args.command, source, args.mapping, settings)
    print(json.dumps(summary.to_json(), sort_keys=True) if args.json else
          held_text(summary) if summary.status is RunStatus.HELD and not (summary.deletes or {}).get("held")
          else render_text(summary))
    if (line := status_line(summary)) is not None:
        print(line, file=sys.stderr)
    return EXIT_CODES[summary.status]


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date: write it as YYYY-MM-DD") from None


def status_line(summary: RunSummary) -> str | None:
    """The one line on stderr of a run that did not complete (exit 1, 3, 4): what is left and what to do."""
    line = next_line(summary)
    return None if line is None else f"braze-migrate: {line}"


def held_text(summary: RunSummary) -> str:
    """A run the guards held: its figures and the one line naming each held one and the flag that accepts it."""
    from braze_migrate.run.public import GuardReport, render_text

    return "\n".join([f"run {summary.run_id} ({summary.kind} of {summary.source}): HELD, nothing was sent",
                      render_text(GuardReport.from_dict(summary.guards or {}))])


def run_flow(kind: str, source: str, mapping: str | None, settings: LoadSettings) -> RunSummary:
    """Run the Prefect flow (local mode unless PREFECT_API_URL points at a server) with the settings the flags and
    this environment resolved as its parameters (every field set, so the flow takes them as they are); its final
    state carries the summary, which is returned; a flow that failed before it had one re-raises its error."""
    from flows.load import backfill, sync

    flow = backfill if kind == "backfill" else sync
    try:
        state = flow(source=source, state=str(settings.state), mapping=mapping, **sections_of(settings),
                     return_state=True)
    except Exception as exc:
        if not type(exc).__module__.startswith(("prefect", "httpx", "httpcore")):
            raise
        raise ConfigError(
            f"Prefect could not run the flow ({type(exc).__name__}): point PREFECT_API_URL at a running server, "
            "raise PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, or pass --no-prefect; the plan is kept, "
            "so the same command resumes it"
        ) from None
    result = state.result(raise_on_failure=False)
    if isinstance(result, RunUnfinished):  # Failed: held, pending or interrupted
        return RunSummary.coerce(result.summary)
    if isinstance(result, RunSummary):
        return result
    if isinstance(result, BaseException):
        raise result
    raise RuntimeError(f"the {kind} flow ended {state.type.value} without a summary")
