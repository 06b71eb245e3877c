"""(a) Our plan stage against the naive pandas plan, same exports, same session, interleaved repeats.

Ours is `build_plan` (normalize + diff + pack, plan written to disk) of tonight's export against the
snapshot of yesterday's export as acknowledged; the naive one diffs the two exports per column in pandas and
builds the JSON bodies in Python. Both must find the same changed (external_id, attribute) pairs.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import orjson
import polars as pl

from bench.data import Inputs
from bench.naive import naive_plan
from braze_migrate.plan.planner import build_plan
from connectors.state.snapshot import Snapshot


def ours(inputs: Inputs, state: Path, plan_dir: Path) -> tuple[float, set[tuple[str, str]]]:
    """(seconds, changed pairs) of the product's plan; pairs are read back from the planned bodies."""
    started = time.perf_counter()
    build_plan(str(inputs.tonight), Snapshot(state), plan_dir, batch_size=75, batch_mode="combined",
               resend_in_doubt=False)
    seconds = time.perf_counter() - started
    return seconds, planned_pairs(plan_dir)


def planned_pairs(plan_dir: Path) -> set[tuple[str, str]]:
    """(external_id, attribute) of every attributes object in a plan's bodies."""
    pairs = set()
    for body in pl.read_parquet(plan_dir / "batches" / "*.parquet")["body"]:
        for obj in orjson.loads(body).get("attributes", ()):
            pairs.update((obj["external_id"], key) for key in obj if key != "external_id")
    return pairs


def naive(inputs: Inputs) -> tuple[float, set[tuple[str, str]]]:
    started = time.perf_counter()
    _, pairs = naive_plan(inputs.day1, inputs.tonight)
    return time.perf_counter() - started, pairs


def compare_plans(inputs: Inputs, state: Path, rounds: int) -> dict:
    """Median seconds of each plan over `rounds` interleaved runs, and whether their pairs agree."""
    times: dict[str, list[float]] = {"ours": [], "naive": []}
    pairs: dict[str, set] = {}
    for _ in range(rounds):
        with tempfile.TemporaryDirectory(dir=state.parent) as tmp:
            seconds, pairs["ours"] = ours(inputs, state, Path(tmp) / "plan")
        times["ours"].append(seconds)
        seconds, pairs["naive"] = naive(inputs)
        times["naive"].append(seconds)
    median = {k: statistics.median(v) for k, v in times.items()}
    return {
        "users": inputs.users,
        "rounds": rounds,
        "ours_s": median["ours"],
        "naive_s": median["naive"],
        "runs": times,
        "speedup": median["naive"] / median["ours"],
        "changed_pairs": len(pairs["ours"]),
        "same_pairs": pairs["ours"] == pairs["naive"],
        "only_ours": len(pairs["ours"] - pairs["naive"]),
        "only_naive": len(pairs["naive"] - pairs["ours"]),
    }

