"""History at scale (issue 11): requests packed full across small partitions, every occurrence in exactly one
request, and a plan stopped halfway resumes into the very plan an uninterrupted run writes."""

from __future__ import annotations

import json
import math
from collections import Counter

import polars as pl
import pytest

from braze_migrate.plan.planner import build_plan, plan_complete, scan_batches
from connectors.state.snapshot import Snapshot
from tests.exports import bulk_export

USERS, PURCHASES, EVENTS = 240, 7, 15
PER_PARTITION = 100  # small partitions: 3 users units, 17 purchases units, 36 events units


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """A history-heavy export: 240 users, 1,680 purchases and 3,600 events."""
    return bulk_export(tmp_path_factory.mktemp("history"), USERS, purchases_per_user=PURCHASES,
                       events_per_user=EVENTS)


def plan(source, state, plan_dir, mode="combined", **kw):
    return build_plan(str(source), Snapshot(state), plan_dir, batch_size=75, batch_mode=mode,
                      resend_in_doubt=False, users_per_partition=PER_PARTITION, **kw)


def sent_ids(plan_dir) -> Counter:
    """How many times each user (attributes) and each purchase/event id (properties.id) is in a request body."""
    seen: Counter = Counter()
    for body in scan_batches(plan_dir, ["body"]).collect()["body"]:
        b = json.loads(body)
        seen.update("u:" + a["external_id"] for a in b.get("attributes", []))
        seen.update(o["properties"]["id"] for arr in ("events", "purchases") for o in b.get(arr, []))
    return seen


@pytest.mark.parametrize("mode", ["combined", "per_array"])
def test_history_heavy_plan_is_packed_full_and_places_every_occurrence_once(history, tmp_path, mode):
    info = plan(history, tmp_path / "state", tmp_path / "plan", mode=mode)
    objects = USERS * (1 + PURCHASES + EVENTS)
    assert info.objects == objects
    assert info.stats["units"] == 3 + 17 + 36
    minimum = math.ceil(objects / 75)
    assert info.batches <= 1.01 * minimum, (info.batches, minimum)
    if mode == "combined":
        assert info.batches == minimum
    for body in scan_batches(tmp_path / "plan", ["body"]).collect()["body"]:
        sizes = [len(v) for v in json.loads(body).values()]
        assert (sum(sizes) if mode == "combined" else max(sizes)) <= 75
    seen = sent_ids(tmp_path / "plan")
    expected = ({f"u:user-{i:06d}" for i in range(USERS)}
                | {f"p-{i:06d}-{k}" for i in range(USERS) for k in range(PURCHASES)}
                | {f"e-{i:06d}-{k}" for i in range(USERS) for k in range(EVENTS)})
    assert set(seen) == expected
    assert set(seen.values()) == {1}
    # The plan's object files agree: each object once, at a distinct (batch, array, index).
    placed = pl.read_parquet(tmp_path / "plan" / "objects" / "*.parquet")
    assert placed.height == objects
    assert placed.select("batch_no", "array", "index").unique().height == objects


def test_a_plan_stopped_halfway_resumes_into_the_same_plan(history, tmp_path):
    whole = plan(history, tmp_path / "s1", tmp_path / "whole")
    planned = []
    stopped = plan(history, tmp_path / "s2", tmp_path / "halves", on_unit=lambda u, b: planned.append(u),
                   stop=lambda: len(planned) >= 20)
    assert stopped is None and not plan_complete(tmp_path / "halves")
    reported = []
    resumed = plan(history, tmp_path / "s2", tmp_path / "halves", resume=True,
                   on_unit=lambda u, b: reported.append((u, b.height)))
    assert plan_complete(tmp_path / "halves")
    assert [u for u, _ in reported] == list(range(whole.stats["units"]))  # written units reported again
    assert sum(n for _, n in reported) == whole.batches == resumed.batches

    def bodies(d):
        return scan_batches(d, ["batch_no", "body"]).collect().sort("batch_no")

    assert bodies(tmp_path / "whole").equals(bodies(tmp_path / "halves"))


def test_a_unit_being_written_is_invisible_to_the_senders_scan(history, tmp_path):
    """A pipelined load's sender scans batches/*.parquet while the planner writes later units: a unit's file
    is written aside and renamed into place, so the scan never meets a half-written file."""
    plan_dir = tmp_path / "plan"
    plan(history, tmp_path / "state", plan_dir)
    assert not list((plan_dir / "batches").glob("*.tmp"))  # every unit was renamed into place
    (plan_dir / "batches" / "unit-99999.parquet.tmp").write_bytes(b"")  # a unit being written
    scanned = scan_batches(plan_dir, ["batch_no", "body"]).collect()
    assert scanned.height == pl.scan_parquet(sorted((plan_dir / "batches").glob("*.parquet"))).collect().height
