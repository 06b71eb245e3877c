"""`braze-migrate sandbox ...` and `python -m braze_sandbox ...`."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import urllib.error
import urllib.request

from braze_sandbox.config import MODES, SandboxConfig
from braze_sandbox.server import READY_PREFIX, bind, make_server, run, url_of

DEFAULT_PORT = 4010


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the sandbox's arguments to a (sub)parser."""
    parser.add_argument(
        "action",
        nargs="?",
        choices=("serve", "dump"),
        default="serve",
        help="serve (default): run the server; dump: print a running sandbox's state",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0 = any)"
    )
    parser.add_argument(
        "--api-key",
        default=None,
        help="REST key the sandbox accepts (default: $BRAZE_API_KEY, else 'sandbox-key')",
    )
    parser.add_argument("--rate-limit", default=None, help="/users/track budget, e.g. 3000/3s (default)")
    parser.add_argument(
        "--mode", choices=MODES, default=None, help="object-count contract (default combined75)"
    )
    parser.add_argument(
        "--export-rate-limit", default=None, help="/users/export/ids budget (default 250/60s)"
    )
    parser.add_argument(
        "--mau-policy", default=None, help="MAU contract limits HOURLY+BURST, e.g. 100000/1h+500/3s"
    )
    parser.add_argument(
        "--fail-rate", type=float, default=None, help="fraction answered 502/503/504, not applied"
    )
    parser.add_argument(
        "--applied-then-fail-rate",
        type=float,
        default=None,
        help="fraction applied and then answered 502/504",
    )
    parser.add_argument("--reset-rate", type=float, default=None, help="fraction whose connection is reset")
    parser.add_argument(
        "--storm-rate", type=float, default=None, help="fraction answered 429 whatever the budget"
    )
    parser.add_argument(
        "--latency-ms", type=int, default=None, help="delay added to every /users/track request"
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of the fault draws (default 0)")
    parser.add_argument(
        "--db", default=None, help="SQLite file that keeps profiles and counters across restarts"
    )
    parser.add_argument(
        "--max-array-length", type=int, default=None, help="array attribute maximum (default 500)"
    )
    parser.add_argument("--settings", default=None, help="further SandboxConfig fields as a JSON object")
    parser.add_argument("--url", default=f"http://127.0.0.1:{DEFAULT_PORT}", help="dump: the sandbox to read")
    parser.add_argument(
        "--what", choices=("state", "profiles", "stats"), default="state", help="dump: what to print"
    )
    parser.add_argument("--out", default=None, help="dump: write to this file instead of stdout")


def config_from_args(args: argparse.Namespace) -> SandboxConfig:
    """A SandboxConfig from parsed arguments: --settings first, then the explicit flags."""
    settings = json.loads(args.settings) if args.settings else {}
    if "blocked_external_ids" in settings:
        settings["blocked_external_ids"] = tuple(settings["blocked_external_ids"])
    flags = {
        "rate_limit": args.rate_limit,
        "mode": args.mode,
        "export_rate_limit": args.export_rate_limit,
        "mau_policy": args.mau_policy,
        "fail_rate": args.fail_rate,
        "applied_then_fail_rate": args.applied_then_fail_rate,
        "reset_rate": args.reset_rate,
        "storm_rate": args.storm_rate,
        "latency_ms": args.latency_ms,
        "seed": args.seed,
        "db_path": args.db,
        "max_array_length": args.max_array_length,
    }
    settings.update({k: v for k, v in flags.items() if v is not None})
    settings["api_key"] = args.api_key or os.environ.get("BRAZE_API_KEY") or "sandbox-key"
    return SandboxConfig(**settings)


def serve(config: SandboxConfig, host: str, port: int) -> int:
    """Run in the foreground until SIGINT/SIGTERM; print one line when ready."""
    try:
        sock = bind(host, port)
    except OSError as error:  # port in use, address not on this machine, privileged port: one line, exit 2
        hint = "stop what uses it or pass --port N (0 = any free port)" if port else "check --host"
        print(f"sandbox: cannot listen on {host}:{port}: {error.strerror or error}; {hint}", file=sys.stderr)
        return 2
    url = url_of(sock)
    app, server = make_server(config)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, server.stop)
        await run(app, server, sock, lambda: print(READY_PREFIX + url, flush=True), own_process=True)

    try:
        asyncio.run(main())
    finally:
        sock.close()
    print("sandbox stopped", file=sys.stderr, flush=True)
    return 0


def dump(url: str, what: str, out: str | None) -> int:
    """Print (or write) a running sandbox's profiles and counters as JSON."""
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/_sandbox/{what}", timeout=60) as response:
            document = json.loads(response.read())
    except (urllib.error.URLError, OSError) as error:
        print(f"cannot read the sandbox at {url}: {error}", file=sys.stderr)
        return 2
    text = json.dumps(document, indent=2, sort_keys=True)
    if out:
        with open(out, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
    else:
        print(text)
    return 0


def run_cli(args: argparse.Namespace) -> int:
    """Run `sandbox [serve]` or `sandbox dump`; return the exit code.

    `braze-migrate sandbox --port N --api-key KEY [--rate-limit 3000/3s] [--mode combined75]
    [--fail-rate F] [--applied-then-fail-rate F] [--reset-rate F] [--storm-rate F] [--latency-ms MS]
    [--seed S] [--db PATH]` serves until SIGINT/SIGTERM, printing `sandbox listening on URL` when ready.
    `braze-migrate sandbox dump --url URL [--what state|profiles|stats] [--out FILE]` prints a running
    sandbox's stored profiles and counters as JSON. The `/_sandbox/*` hooks it reads need no API key.
    """
    if args.action == "dump":
        return dump(args.url, args.what, args.out)
    try:
        config = config_from_args(args)
    except (ValueError, TypeError) as error:
        print(f"bad sandbox settings: {error}", file=sys.stderr)
        return 2
    return serve(config, args.host, args.port)
