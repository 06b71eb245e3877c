"""The README's reference tables, generated from what they describe, so they cannot drift: the options of
`backfill` and `sync` (from the `braze-migrate` parser, itself generated from the options model in
braze_migrate/settings.py) and the exit codes (braze_migrate/cli/exits.py).

`python -m braze_migrate.cli.reference --write README.md` rewrites each table between its markers
(`<!-- generated:NAME -->` … `<!-- /generated:NAME -->`); tests/test_docs.py fails when README.md differs.
"""

from __future__ import annotations

import argparse
import re
import sys
import typing
from pathlib import Path

from braze_migrate.cli.exits import MEANINGS
from braze_migrate.cli.options import _required
from braze_migrate.settings import LoadSettings

METAVARS = {int: "N", float: "X", str: "TEXT", Path: "DIR"}
MARKER = re.compile(r"(<!-- generated:(?P<name>[a-z-]+) -->\n)(?P<body>.*?)(<!-- /generated:(?P=name) -->)", re.DOTALL)


def options_table(command: str = "backfill") -> str:
    """Every flag of `command`: its default, the environment variable and the flows' parameter that set it (model
    options only: `section.name` in a deployment's parameters, docs/prefect.md) and what it means."""
    from braze_migrate.cli.main import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    rows = ["| option | default | environment | flow parameter | meaning |", "|---|---|---|---|---|"]
    for action in sub.choices[command]._actions:
        if not action.option_strings or isinstance(action, argparse._HelpAction):
            continue
        name = action.dest
        field = LoadSettings.model_fields.get(name)
        if field is None:  # a flag of the command line only
            flag = action.option_strings[0] + (f" {action.metavar}" if action.metavar else "")
            default = "off" if isinstance(action, argparse._StoreTrueAction) else "unset"
            param = f"`{name}`" if name in _flow_parameters(command) else "—"
            rows.append(f"| `{flag}` | {default} | — | {param} | {_cell(action.help.replace('%%', '%'))} |")
            continue
        section = (field.json_schema_extra or {}).get("section")
        rows.append(f"| `{_flag(action, field)}` | {_default(field.default)} | `BRAZE_MIGRATE_{name.upper()}` | "
                    f"`{f'{section}.{name}' if section else name}` | {_cell(field.description)} |")
    return "\n".join(rows) + "\n"


def _flow_parameters(command: str) -> set[str]:
    """The parameters of the flow that `command` runs (source, state, mapping, date, the sections)."""
    import inspect

    from flows.load import backfill, sync
    from flows.verify import verify

    flow = {"backfill": backfill, "sync": sync, "verify": verify}[command]
    return set(inspect.signature(flow.fn).parameters)


def exit_codes_table() -> str:
    rows = ["| exit code | meaning |", "|---|---|"]
    rows += [f"| `{code}` | {meaning} |" for code, meaning in sorted(MEANINGS.items())]
    return "\n".join(rows) + "\n"


TABLES = {"options": options_table, "options-verify": lambda: options_table("verify"),
          "exit-codes": exit_codes_table}


def render(text: str) -> str:
    """`text` with every generated table replaced by its current content."""
    return MARKER.sub(lambda m: m.group(1) + TABLES[m.group("name")]() + m.group(4), text)


def _flag(action: argparse.Action, field) -> str:
    if isinstance(action, argparse.BooleanOptionalAction):
        return "/".join(action.option_strings)
    kind = _required(field.annotation)
    if action.choices:
        value = "\\|".join(action.choices)
    elif typing.get_origin(kind) is list:
        value = "A,B"
    else:
        value = METAVARS.get(kind, "VALUE")
    if action.dest.endswith("rate_limit"):
        value = "N/PERIOD"
    return f"{action.option_strings[0]} {value}"


def _cell(text: str) -> str:
    """Text that stays inside one table cell."""
    return " ".join(text.split()).replace("|", "\\|")


def _default(value) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if value is None or value == [] or value == "":
        return "unset"
    return f"`{value}`"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", nargs="?", default="README.md")
    parser.add_argument("--write", action="store_true", help="rewrite the file's tables in place")
    args = parser.parse_args(argv)
    path = Path(args.file)
    text = path.read_text()
    fresh = render(text)
    if args.write:
        path.write_text(fresh)
        return 0
    print("up to date" if fresh == text else f"{path}: generated tables differ; run with --write")
    return 0 if fresh == text else 1


if __name__ == "__main__":
    sys.exit(main())
