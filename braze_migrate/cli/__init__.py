"""The `braze-migrate` command: the top layer. It parses flags (generated from the options model), checks
what it can before Prefect starts, runs the flows (or, with --no-prefect, the same stages inline) and
renders their typed results. One module per sub-command, each with `add_parser(subparsers)` and `run(args)`."""
