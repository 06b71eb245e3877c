"""`braze-migrate sandbox`: the local Braze-compatible server, when its distribution (./sandbox) is installed."""

from __future__ import annotations

import argparse

from braze_migrate.settings import ConfigError


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("sandbox", help="run the local Braze-compatible sandbox server (package braze-sandbox)")
    try:
        from braze_sandbox import add_cli_arguments
    except ImportError:  # the sandbox is its own distribution (./sandbox); production installs leave it out
        p.add_argument("rest", nargs=argparse.REMAINDER)
    else:
        add_cli_arguments(p)
    return p


def run(args: argparse.Namespace) -> int:
    try:
        from braze_sandbox import run_cli
    except ImportError:
        raise ConfigError("the Braze sandbox is not installed: `pip install ./sandbox` from a checkout "
                          "(`make demo` and `make test` install it)") from None
    return run_cli(args)
