"""The memo of unchanged users (braze_migrate/plan/seen.py) changes how fast a sync plans, never what it plans.

Each case loads real exports through the CLI into the sandbox, then plans the next export twice against the
same state: with the memo and with the memo removed. The two plans must be identical: every request body,
every kept row and reason, every reject, every figure. Then the state is tampered with (a snapshot row
changed behind the memo's back, a garbage memo file, a changed contract) and the plans must still agree.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from braze_migrate.plan.planner import build_plan
from connectors.state.seen import SeenCache
from connectors.state.snapshot import SCHEMAS, Snapshot, partition_of
from tests.cli_run import run_cli
from tests.exports import DAY1_USERS, write_export
from transforms.deltas import DELETED

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"


def _plan(source: Path, state: Path, plan_dir: Path) -> dict:
    info = build_plan(str(source), Snapshot(state), plan_dir, batch_size=75, batch_mode="combined",
                      resend_in_doubt=False, users_per_partition=40)
    batches = pl.scan_parquet(sorted((plan_dir / "batches").glob("*.parquet"))).collect() \
        if any((plan_dir / "batches").glob("*.parquet")) else pl.DataFrame()
    stats = json.loads((plan_dir / "stats.json").read_text())
    stats.pop("source")
    return {
        "batches": batches.drop("partition", strict=False).sort("batch_no").rows() if batches.height else [],
        "kept": sorted(pl.read_parquet(plan_dir / "kept.parquet").rows(), key=repr),
        "rejects": sorted(pl.read_parquet(plan_dir / "rejects.parquet").rows(), key=repr),
        "stats": stats,
        "objects": info.objects,
        "skipped": sum(json.loads(m.read_text())["unchanged"] for m in (plan_dir / "units").glob("unit-*.json")),
    }


def _same_plan_with_and_without_memo(source: Path, state: Path, tmp: Path) -> dict:
    """Plan `source` against `state` with its memo and against a copy without; assert they are identical."""
    with_memo = _plan(source, state, tmp / "with")
    bare = tmp / "bare-state"
    shutil.rmtree(bare, ignore_errors=True)
    shutil.copytree(state, bare)
    shutil.rmtree(bare / "seen", ignore_errors=True)
    without = _plan(source, bare, tmp / "without")
    for key in ("batches", "kept", "rejects", "stats", "objects"):
        assert with_memo[key] == without[key], key
    return with_memo


def _load(kind: str, source: Path, state: Path) -> dict:
    done = run_cli(kind, source, "--state", state, "--no-prefect", "--json", "--users-per-partition", "40")
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture()
def loaded(braze_env, tmp_path) -> Path:
    """A state that backfilled the day-1 sample export into the sandbox."""
    state = tmp_path / "state"
    _load("backfill", SAMPLES / "day1", state)
    return state


def test_a_backfill_leaves_a_memo_that_skips_every_unchanged_user(loaded, tmp_path):
    assert any((loaded / "seen").rglob("part-*.parquet"))
    again = _same_plan_with_and_without_memo(SAMPLES / "day1", loaded, tmp_path / "a")
    users = again["stats"]["read"]["users"]
    # The same export again: every clean user is skipped; only users with a reject take the full path.
    assert again["batches"] == [] or all(b[0] is not None for b in again["batches"])
    assert again["skipped"] >= users * 0.8


def test_the_next_night_plans_the_same_with_or_without_the_memo(loaded, tmp_path):
    _same_plan_with_and_without_memo(SAMPLES / "day2", loaded, tmp_path / "b")
    _load("sync", SAMPLES / "day2", loaded)  # its commit adds the users it sent and found unchanged
    _same_plan_with_and_without_memo(SAMPLES / "day2", loaded, tmp_path / "c")
    _same_plan_with_and_without_memo(SAMPLES / "day1", loaded, tmp_path / "d")


def test_a_snapshot_row_changed_behind_the_memo_is_planned_in_full(loaded, tmp_path):
    snapshot = Snapshot(loaded)
    part = next((loaded / "snapshot" / "users").glob("part-*.parquet"))
    p = int(part.stem.split("-")[1])
    rows = pl.read_parquet(part)
    victim = rows["external_id"][0]
    value_columns = [c for c in rows.columns if c != "external_id" and rows[c].dtype == pl.Utf8]
    changed = rows.with_columns(pl.when(pl.col("external_id") == victim).then(pl.lit('"tampered"'))
                                .otherwise(pl.col(value_columns[0])).alias(value_columns[0]))
    changed.write_parquet(snapshot.users_part_path(p))
    plan = _same_plan_with_and_without_memo(SAMPLES / "day1", loaded, tmp_path / "e")
    sent = {json.loads(body)["attributes"][i]["external_id"]
            for _, body, *_ in plan["batches"] for i in range(len(json.loads(body).get("attributes", [])))}
    assert victim in sent  # the memo matched its export row, but not its snapshot row: diffed, and resent


def test_a_garbage_memo_or_another_salt_is_a_miss(loaded, tmp_path):
    for f in (loaded / "seen").rglob("part-*.parquet"):
        f.write_bytes(b"not parquet")
    plan = _same_plan_with_and_without_memo(SAMPLES / "day1", loaded, tmp_path / "f")
    assert plan["skipped"] >= 0
    cache = SeenCache(loaded)
    assert cache.read(0, "0000000000000000") is None


def test_the_whole_user_model_plans_the_same_with_or_without_the_memo(braze_env, tmp_path):
    """Nested objects, arrays of objects and subscription groups (the user-model samples), night after night."""
    state = tmp_path / "state"
    nights = SAMPLES / "user_model"
    _load("backfill", nights / "night1", state)
    assert _same_plan_with_and_without_memo(nights / "night1", state, tmp_path / "g")["skipped"] > 0
    _same_plan_with_and_without_memo(nights / "night2", state, tmp_path / "h")
    _load("sync", nights / "night2", state)
    _same_plan_with_and_without_memo(nights / "night2", state, tmp_path / "i")


@pytest.mark.parametrize("fmt", ["csv", "ndjson"])
def test_text_exports_plan_the_same_with_or_without_the_memo(braze_env, tmp_path, fmt):
    """CSV columns are typed from all their values (part of the memo's salt); rejects stay whole."""
    src = write_export(tmp_path / "export", fmt)
    state = tmp_path / "state"
    _load("backfill", src, state)
    plan = _same_plan_with_and_without_memo(src, state, tmp_path / "j")
    assert plan["skipped"] > 0 and plan["rejects"]  # the bad email, the missing id, the superseded row: reported every night
    changed = [dict(u, score=(u["score"] or 0) + 1) if u["external_id"] == "000123" else u for u in DAY1_USERS]
    src2 = write_export(tmp_path / "export2", fmt, users=changed)
    _same_plan_with_and_without_memo(src2, state, tmp_path / "k")


def test_a_user_deleted_on_behalf_of_user_deletes_is_never_skipped(loaded, tmp_path):
    """A deleted user's row is unchanged and matches the memo, yet the full path must report it (not loaded
    again, with the reason): users held for any reason are left out of the memo's skipping."""
    snapshot = Snapshot(loaded)
    part = next((loaded / "snapshot" / "users").glob("part-*.parquet"))
    victim = pl.read_parquet(part)["external_id"][0]
    held = pl.DataFrame({"dataset": ["user_deletes"], "key": [victim], "fingerprint": [None], "status": ["deleted"],
                         "reason": ["deleted on behalf of user_deletes"], "run_id": ["r"]}).cast(SCHEMAS["held"])
    held.write_parquet(snapshot.path("held"))
    plan = _same_plan_with_and_without_memo(SAMPLES / "day1", loaded, tmp_path / "l")
    reasons = {row[1]: row[3] for row in plan["kept"] if row[0] == "users"}
    assert reasons.get(victim) == DELETED
    assert plan["skipped"] > 0


def test_a_first_loads_memo_taken_while_planning_equals_the_one_read_back_from_the_snapshot(loaded, tmp_path):
    """A first load's entries come from the hashes and kinds the plan took (no snapshot read at commit); read
    back from the committed snapshot instead, they are the same."""
    from braze_migrate.commit.committer import object_outcomes
    from braze_migrate.plan.seen import NEXT, commit_entries, schema_of
    from braze_migrate.run.engine import open_run_ledger
    from braze_migrate.settings import load_settings

    def memo(state: Path) -> pl.DataFrame:
        return pl.concat([pl.read_parquet(f) for f in sorted((state / "seen").rglob("part-*.parquet"))]
                         ).sort("external_id")

    fast = memo(loaded)
    assert fast.height > 0
    again = tmp_path / "again"
    shutil.copytree(loaded, again)
    shutil.rmtree(again / "seen")
    plan_dir = next(again.glob("runs/*/plan"))
    sidecars = list((plan_dir / NEXT).glob("part-*.json"))
    firsts = {int(f.stem.split("-")[1]): json.loads(f.read_text())["first_schema"] for f in sidecars}
    assert firsts and all(firsts.values())
    for p, planned in firsts.items():  # the commit wrote the parts the plan expected: the fast path was taken
        assert schema_of(pl.read_parquet_schema(Snapshot(loaded).users_part_path(p))) == planned
    for f in sidecars:
        f.unlink()  # without them, the entries are checked against the snapshot rows read back
    ledger = open_run_ledger(load_settings(state=again))
    try:
        acked = object_outcomes(plan_dir.parent.name, plan_dir, ledger).filter(
            (pl.col("outcome") == "acknowledged") & (pl.col("dataset") == "users"))
    finally:
        ledger.close()
    parts = Snapshot(again).partitions(default=1)
    acked = acked.with_columns(_p=partition_of(pl.col("external_id"), parts))
    commit_entries(plan_dir, Snapshot(again), {p: acked.filter(pl.col("_p") == p) for p in range(parts)})
    assert memo(again).equals(fast)


def test_a_damaged_memo_candidate_file_never_fails_the_commit(braze_env, tmp_path, caplog):
    """The plan's memo candidates are a cache's input: a garbage one is skipped with a warning naming the file
    (that partition's users are planned in full next time), and the other partitions' entries are written."""
    from braze_migrate.plan.seen import NEXT, commit_entries

    state = tmp_path / "state"
    summary = _load("backfill", SAMPLES / "day1", state)
    plan_dir = state / "runs" / summary["run_id"] / "plan"
    parts = sorted((plan_dir / NEXT).glob("part-*.parquet"))
    assert len(parts) > 1
    parts[0].write_bytes(b"garbage")
    shutil.rmtree(state / "seen")
    snapshot = Snapshot(state)
    acked = {int(f.stem.split("-")[1]): pl.read_parquet(f, columns=["external_id"])  # every user was acknowledged
             for f in (state / "snapshot" / "users").glob("part-*.parquet")}
    commit_entries(plan_dir, snapshot, acked)  # no exception
    assert f"({parts[0].name}: ComputeError); the next sync plans those users in full" in caplog.text
    written = {f.name for f in (state / "seen").rglob("part-*.parquet")}
    assert parts[0].name not in written and written
