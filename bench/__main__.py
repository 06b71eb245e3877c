"""Run the benchmarks and print one table of ratios measured in this run; also write it as JSON.

    python -m bench --big      # every row (`make bench`): 1M users, the history-heavy export, 10M-user plan
    python -m bench            # the same without the 10M-user plan (about 6 minutes on a quiet machine)
    python -m bench --quick    # small sizes, checks the harness (under 2 minutes)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from bench import table
from bench.data import OUT, Inputs, ensure_inputs

SECTIONS = ("e2e", "plan", "memory", "history", "sql", "loader", "client", "sustain")


@dataclass(frozen=True)
class Sizes:
    users: int
    plan_rounds: int
    requests: int
    sandbox_requests: int
    client_rounds: int
    sustain_seconds: float
    sustain_rounds: int
    history_users: int = 200_000
    history_events: int = 4_000_000
    history_purchases: int = 2_000_000
    big_users: int | None = None
    sql_rows: int = 1_000_000
    sql_big_rows: int = 5_000_000
    loader: tuple[int, int, int] = (100_000, 500_000, 250_000)  # users, events, purchases of the loader's sync


QUICK = Sizes(users=20_000, plan_rounds=1, requests=200, sandbox_requests=100, client_rounds=1, sustain_seconds=7,
              sustain_rounds=1, history_users=1_000, history_events=10_000, history_purchases=5_000,
              sql_rows=20_000, sql_big_rows=100_000, loader=(500, 3_000, 1_500))
DEFAULT = Sizes(users=1_000_000, plan_rounds=3, requests=2000, sandbox_requests=600, client_rounds=3,
                sustain_seconds=21, sustain_rounds=3)
BIG_USERS = 10_000_000


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small sizes, to check the harness")
    size.add_argument("--big", action="store_true", help=f"also plan {BIG_USERS:,} users (peak RSS)")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"sections to run, of {','.join(SECTIONS)}")
    parser.add_argument("--users", type=int, help="override the number of users")
    parser.add_argument("--requests", type=int, help="override the requests per client case")
    parser.add_argument("--sustain-seconds", type=float, help="override the rate-limit run's length")
    parser.add_argument("--history", type=int, nargs=3, metavar=("USERS", "EVENTS", "PURCHASES"),
                        help="override the history-heavy export's size")
    parser.add_argument("--out", type=Path, default=OUT, help="where inputs, states and results go")
    parser.add_argument("--no-write", action="store_true", help="print only; no JSON in --out")
    return parser.parse_args(argv)


def sizes_of(args: argparse.Namespace) -> Sizes:
    sizes = QUICK if args.quick else replace(DEFAULT, big_users=BIG_USERS if args.big else None)
    if args.users:
        sizes = replace(sizes, users=args.users)
    if args.requests:
        sizes = replace(sizes, requests=args.requests, sandbox_requests=args.requests)
    if args.sustain_seconds:
        sizes = replace(sizes, sustain_seconds=args.sustain_seconds)
    if args.history:
        sizes = replace(sizes, history_users=args.history[0], history_events=args.history[1],
                        history_purchases=args.history[2])
    return sizes


def run(args: argparse.Namespace) -> dict:
    """Every selected section; results keyed by section, with the load average around each."""
    sizes, only = sizes_of(args), set(args.only.split(","))
    unknown = only - set(SECTIONS)
    if unknown:
        raise SystemExit(f"unknown section(s) {', '.join(sorted(unknown))}: choose from {', '.join(SECTIONS)}")
    results = {"machine": table.machine(), "sizes": asdict(sizes), "loadavg": {}}
    inputs = ensure_inputs(sizes.users, args.out / "data")
    state = args.out / f"run-{sizes.users}" / "state"

    def section(name, fn, *fn_args):
        before = os.getloadavg()[0]
        started = time.monotonic()
        results[name] = fn(*fn_args)
        results["loadavg"][name] = [before, os.getloadavg()[0]]
        print(f"  {name}: {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)

    if "e2e" in only:
        section("e2e_backfill", e2e_median, "backfill", inputs.day1, state, sizes.users, sizes.plan_rounds)
    elif {"plan", "memory"} & only:
        state = acknowledged_state(inputs, args.out)
    if "plan" in only:
        from bench.plans import compare_plans

        section("plan", compare_plans, inputs, state, sizes.plan_rounds)
    if "memory" in only:
        section("memory", memory_cases, inputs, state, sizes, args.out)
    if "e2e" in only:
        section("e2e_sync", e2e_run, "sync", inputs.tonight, state, sizes.users, False)
    if "history" in only:
        from bench.history import ensure_history, history_cases

        section("history", history_cases, sizes.history_users, sizes.history_events, sizes.history_purchases,
                args.out)
    if "history" in only and "e2e" in only:
        made = ensure_history(sizes.history_users, sizes.history_events, sizes.history_purchases,
                              args.out / "history", single_file=True)
        section("e2e_history", e2e_run, "backfill", made.folder, args.out / "history-run" / "state",
                sizes.history_users, True)
    if "sql" in only:
        from bench.sql_source import sql_cases

        section("sql", sql_cases, sizes.sql_rows, sizes.sql_big_rows, 1 if args.quick else 3)
    if "loader" in only:
        from bench.loader_cpu import loader_cpu

        section("loader", loader_cpu, *sizes.loader, args.out)
    if "client" in only:
        from bench.clients import compare_clients

        section("client_minimal", compare_clients, "minimal", sizes.requests, sizes.client_rounds)
        section("client_sandbox", compare_clients, "sandbox", sizes.sandbox_requests, sizes.client_rounds)
    if "sustain" in only:
        from bench.sustain import sustain

        section("sustain", sustain, "1000/3s", sizes.sustain_seconds, sizes.sustain_rounds)
    results["machine"]["loadavg_end"] = os.getloadavg()
    return results


def e2e_median(kind: str, export: Path, state: Path, users: int, rounds: int) -> dict:
    """`rounds` runs of a backfill into a fresh state each; the run of median wall time, with every run's."""
    runs = [e2e_run(kind, export, state, users, True) for _ in range(max(1, rounds))]
    chosen = sorted(runs, key=lambda run: run["total_s"])[len(runs) // 2]
    return {**chosen, "rounds_total_s": [run["total_s"] for run in runs]}


def e2e_run(kind: str, export: Path, state: Path, users: int, fresh: bool) -> dict:
    """An engine run into the minimal server of bench_client.py (started for it, stopped after)."""
    from bench.bench_client import start_server
    from bench.e2e import run_e2e

    if fresh:
        shutil.rmtree(state, ignore_errors=True)
    endpoint, stop = start_server("minimal")
    try:
        return run_e2e(kind, export, state, endpoint, users)
    finally:
        stop()


def acknowledged_state(inputs: Inputs, out: Path) -> Path:
    """The state of yesterday's export fully acknowledged (a backfill planned and committed, bench/state.py),
    made once and reused while its partition count is the planner's default and the planning code is the one
    it was made with (the memo of unchanged users is only valid for that code)."""
    from bench.state import partitions_for, write_acknowledged_state
    from braze_migrate.plan.seen import code_digest

    state = out / f"state-{inputs.users}"
    meta = state / "snapshot" / "meta.json"
    stamp = state / "bench-code.txt"  # the memo of unchanged users is salted with the planning code
    if (not meta.exists() or json.loads(meta.read_text())["partitions"] != partitions_for(inputs.users)
            or not stamp.exists() or stamp.read_text() != code_digest()):
        print(f"  writing the acknowledged state of {inputs.users:,} users", file=sys.stderr, flush=True)
        write_acknowledged_state(inputs.day1, state)
        stamp.write_text(code_digest())
    return state


def memory_cases(inputs: Inputs, state: Path, sizes: Sizes, out: Path) -> dict:
    """Peak RSS of tonight's sync plan at the run's size, and at `big_users` when asked."""
    from bench.memory import plan_peak

    cases = {str(inputs.users): plan_peak(inputs.tonight, state, out / "plan-rss", trace=True)}
    if sizes.big_users:
        big = ensure_inputs(sizes.big_users, out / "data")
        cases[str(sizes.big_users)] = plan_peak(big.tonight, acknowledged_state(big, out), out / "plan-rss",
                                                trace=True)
    return cases


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    results = run(args)
    print(table.render(results))
    if not args.no_write:
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / f"results-{time.strftime('%Y%m%dT%H%M%S')}.json"
        path.write_text(json.dumps(results, indent=2, default=str))
        print(f"\nresults written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
