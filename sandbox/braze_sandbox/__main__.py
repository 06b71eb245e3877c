"""`python -m braze_sandbox [serve|dump] ...`: the sandbox without the full CLI."""

import argparse
import sys

from braze_sandbox.cli import add_cli_arguments, run_cli


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m braze_sandbox", description="Local Braze-compatible sandbox server."
    )
    add_cli_arguments(parser)
    return run_cli(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
