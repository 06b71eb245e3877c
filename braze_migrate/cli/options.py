"""CLI flags generated from the options model (`braze_migrate.settings.LoadSettings`): one `--name` per
option a sub-command takes, with the model's type, choices and help. A flag left out is None, so the
environment (BRAZE_MIGRATE_<NAME>) and then the model's default decide, exactly as for the flows."""

from __future__ import annotations

import argparse
import contextlib
import types
import typing
from pathlib import Path

from braze_migrate.settings import ConfigError, LoadSettings, flag_options, load_settings


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_option_flags(parser: argparse.ArgumentParser, command: str) -> None:
    """Add the flags of every option `command` takes."""
    for name in flag_options(command):
        field = LoadSettings.model_fields[name]
        kind, choices = _required(field.annotation), None
        if typing.get_origin(kind) is typing.Literal:
            kind, choices = str, typing.get_args(kind)
        elif kind is Path:
            kind = str
        elif typing.get_origin(kind) is list:
            kind = comma_list
        default = str(field.default) if isinstance(field.default, Path) else field.default
        help_text = f"{field.description} (default {default}; env BRAZE_MIGRATE_{name.upper()})"
        if kind is bool:  # --name / --no-name; absent leaves it to the environment and the default
            parser.add_argument(flag(name), dest=name, action=argparse.BooleanOptionalAction, default=None,
                                help=help_text)
            continue
        parser.add_argument(flag(name), dest=name, type=kind, choices=choices, default=None, help=help_text)


def _required(kind):
    """`X` of an optional `X | None` (unset is None anyway), else the type itself."""
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    return args[0] if typing.get_origin(kind) in (typing.Union, types.UnionType) and len(args) == 1 else kind


def comma_list(value: str) -> list[str]:
    """A list option's flag value: `a,b,c` (the environment variable takes a JSON list)."""
    return [part.strip() for part in value.split(",") if part.strip()]


def settings_from_args(args: argparse.Namespace, command: str) -> LoadSettings:
    """The settings of a sub-command: its flags over the environment over the model's defaults."""
    return load_settings(**{name: getattr(args, name, None) for name in flag_options(command)})


def existing_state(settings) -> Path:
    """The state folder of a command that repairs or settles what a run left (repair, settle, undelete): it
    must exist and hold a ledger, so a mistyped --state fails here instead of creating an empty folder."""
    from connectors.state.private import open_private

    state = Path(settings.state)
    has_ledger = settings.ledger_url is not None or (state / "ledger.sqlite").is_file()
    if not state.is_dir() or not has_ledger:
        raise ConfigError(f"{state} is not a state folder (no ledger there): check --state or BRAZE_MIGRATE_STATE; "
                          "nothing was changed")
    return open_private(state)


@contextlib.contextmanager
def holding_state(settings, command: str):
    """(state folder, ledger) of a command that changes what runs left (repair, settle, undelete): the folder
    must exist (`existing_state`), and the command holds the run lock, so it never works under a live run."""
    from braze_migrate.run.engine import open_run_ledger
    from connectors.state.ledger_base import LedgerUnavailable
    from connectors.state.lock import StateInUse, run_lock

    state = existing_state(settings)
    url = settings.ledger_url.get_secret_value() if settings.ledger_url else None
    try:
        with run_lock(state, command, ledger_url=url):
            ledger = open_run_ledger(settings)
            try:
                yield state, ledger
            finally:
                ledger.close()
    except (StateInUse, LedgerUnavailable) as exc:
        raise ConfigError(str(exc)) from None
