"""Guard figures from a plan's `users_next` parts against the snapshot's parts, and rows against the last
acknowledged export: a broken export is held with one message naming each figure and the accepting flag,
a normal night passes, accepted figures no longer hold."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from braze_migrate.cli.exits import EXIT_HELD
from braze_migrate.plan import guards
from braze_migrate.plan.guards import GuardSettings, baseline_rows, check_plan, dataset_figures, parse_accept
from connectors.state.ledger import Ledger

ROOT = Path(__file__).resolve().parent.parent

DEFAULTS = GuardSettings()


def write_state(state: Path, parts: dict[int, pl.DataFrame]) -> None:
    (state / "snapshot" / "users").mkdir(parents=True, exist_ok=True)
    for p, df in parts.items():
        df.write_parquet(state / "snapshot" / "users" / f"part-{p:05d}.parquet")


def write_plan(plan: Path, parts: dict[int, pl.DataFrame], read: dict[str, int]) -> None:
    (plan / "users_next").mkdir(parents=True, exist_ok=True)
    for p, df in parts.items():
        df.write_parquet(plan / "users_next" / f"part-{p:05d}.parquet")
    (plan / "stats.json").write_text(json.dumps({"read": read}))


def users(ids, **columns) -> pl.DataFrame:
    return pl.DataFrame({"external_id": [f"u{i}" for i in ids], **columns},
                        schema={"external_id": pl.Utf8, **{c: pl.Utf8 for c in columns}})


def test_broken_export_emptying_two_columns_is_held_with_one_line_naming_each(tmp_path):
    n = 300
    tiers = ['"gold"', '"silver"', '"bronze"'] * (n // 3)
    # Two partitions, as the snapshot splits users by hash: figures are summed over them.
    write_state(tmp_path, {
        0: users(range(150), email=[f'"a{i}@x.io"' for i in range(150)], loyalty_tier=tiers[:150],
                 city=['"Oslo"'] * 150),
        1: users(range(150, n), email=[f'"a{i}@x.io"' for i in range(150, n)], loyalty_tier=tiers[150:],
                 city=['"Oslo"'] * 150),
    })
    # Tonight every user is planned: email and tier emptied, city unchanged.
    write_plan(tmp_path / "plan", {
        0: users(range(150), email=[None] * 150, loyalty_tier=[None] * 150, city=['"Oslo"'] * 150),
        1: users(range(150, n), email=[None] * 150, loyalty_tier=[None] * 150, city=['"Oslo"'] * 150),
    }, read={"users": n})
    report = check_plan(tmp_path / "plan", tmp_path, {"users": n}, DEFAULTS)

    assert [(f.accept, f.kind, f.count, f.of) for f in report.held] == [
        ("email", "unset", n, n), ("loyalty_tier", "unset", n, n)]
    by_column = {c["column"]: c for c in report.columns}
    assert by_column["city"] == {"column": "city", "users": n, "unset": 0, "changed": 0, "unset_share": 0.0,
                                 "changed_share": 0.0}
    message = report.message("braze-migrate sync exports/tonight --state st")
    assert "\n" not in message and "nothing was sent" in message
    assert "email: 100.0% of its 300 users would be unset" in message
    assert "loyalty_tier: 100.0% of its 300 users would be unset" in message
    assert "`braze-migrate sync exports/tonight --state st --accept email,loyalty_tier`" in message
    assert "for every night, raise --guard-unset-share)" in message
    assert "@x.io" not in message and "gold" not in message  # counts and names, never values

    accepted = check_plan(tmp_path / "plan", tmp_path, {"users": n}, DEFAULTS,
                          accepted=parse_accept("email, loyalty_tier"))
    assert accepted.held == [] and len(accepted.findings) == 2
    partly = check_plan(tmp_path / "plan", tmp_path, {"users": n}, DEFAULTS, accepted=["email"])
    assert [f.accept for f in partly.held] == ["loyalty_tier"]
    assert "--accept email,loyalty_tier" in partly.message()


def test_changed_values_and_small_columns(tmp_path):
    n = 200
    write_state(tmp_path, {0: users(range(n), tier=['"gold"'] * n, nickname=['"x"'] * 50 + [None] * 150)})
    # 60% of tiers rewritten, and every nickname emptied, but only 50 users hold one: too few to judge.
    write_plan(tmp_path / "plan", {0: users(range(n), tier=['"bronze"'] * 120 + ['"gold"'] * 80,
                                            nickname=[None] * n)}, read={"users": n})
    report = check_plan(tmp_path / "plan", tmp_path, {"users": n}, DEFAULTS)
    assert [(f.accept, f.kind, round(f.share, 2)) for f in report.held] == [("tier", "changed", 0.6)]
    assert "tier: 60.0% of its 200 users would be changed" in report.message()
    strict = check_plan(tmp_path / "plan", tmp_path, {"users": n}, GuardSettings(min_users=10))
    assert {(f.accept, f.kind) for f in strict.held} == {("tier", "changed"), ("nickname", "unset")}
    loose = check_plan(tmp_path / "plan", tmp_path, {"users": n}, GuardSettings(changed_share=0.7))
    assert loose.held == []


def test_normal_night_passes_and_only_planned_users_are_compared(tmp_path):
    n = 1000
    write_state(tmp_path, {0: users(range(n), email=[f'"a{i}@x.io"' for i in range(n)])})
    # 30 users changed their email, 20 removed it (2%), a new user arrives: under every threshold.
    write_plan(tmp_path / "plan", {0: pl.concat([
        users(range(30), email=[f'"b{i}@x.io"' for i in range(30)]),
        users(range(30, 50), email=[None] * 20),
        users([5000], email=['"new@x.io"']),
    ])}, read={"users": n + 1})
    report = check_plan(tmp_path / "plan", tmp_path, {"users": n}, DEFAULTS)
    assert report.held == [] and report.message() == "guards passed"
    assert report.columns == [{"column": "email", "users": n, "unset": 20, "changed": 30, "unset_share": 0.02,
                               "changed_share": 0.03}]


def test_dataset_shrinking_by_half_or_missing_is_held(tmp_path):
    figures = dataset_figures({"users": 990, "purchases": 500}, {"users": 1000, "purchases": 1000, "events": 400})
    assert figures == [
        {"dataset": "events", "before": 400, "tonight": 0, "drop_share": 1.0},
        {"dataset": "purchases", "before": 1000, "tonight": 500, "drop_share": 0.5},
        {"dataset": "users", "before": 1000, "tonight": 990, "drop_share": 0.01},
    ]
    report = guards.evaluate(pl.DataFrame(schema=guards.FIGURE_SCHEMA), figures, DEFAULTS)
    assert [f.accept for f in report.held] == ["rows:events", "rows:purchases"]
    assert "purchases: rows down 50.0% (1,000 in the last acknowledged export, 500 tonight" in report.message()
    assert guards.evaluate(pl.DataFrame(schema=guards.FIGURE_SCHEMA), figures, DEFAULTS,
                           accepted=["rows:events", "rows:purchases"]).held == []
    # Small datasets are not judged.
    small = dataset_figures({"events": 10}, {"events": 50})
    assert guards.evaluate(pl.DataFrame(schema=guards.FIGURE_SCHEMA), small, DEFAULTS).held == []


def test_nothing_acknowledged_yet_has_no_figures(tmp_path):
    write_plan(tmp_path / "plan", {0: users(range(500), email=[None] * 500)}, read={"users": 500})
    report = check_plan(tmp_path / "plan", tmp_path / "empty-state", None, DEFAULTS)
    assert report.columns == [] and report.datasets == [] and report.held == []


def test_baseline_is_the_last_committed_run(tmp_path):
    from connectors.state.ledger_base import Run

    def run(run_id, status, read=None):
        summary = {"datasets": {k: {"read": v} for k, v in (read or {}).items()}} if read else None
        return Run(run_id, "sync", "src", "fp", status, 0.0, {}, summary)

    stats = tmp_path / "runs" / "r2" / "plan"
    stats.mkdir(parents=True)
    (stats / "stats.json").write_text(json.dumps({"read": {"users": 7}}))
    runs = [run("r3", "planned"), run("r2", "committed"), run("r1", "committed", {"users": 5})]
    assert baseline_rows(runs, tmp_path) == {"users": 7}
    assert baseline_rows(runs, tmp_path, exclude="r2") == {"users": 5}
    assert baseline_rows([run("r3", "planned")], tmp_path) is None


# Through the CLI against the sandbox over HTTP: the acceptance cases of issue 12.
DAY1, DAY2 = ROOT / "data/samples/day1", ROOT / "data/samples/day2"


def cli(*args: str) -> int:
    from braze_migrate.cli.main import main

    return main([*args, "--no-prefect"])


@pytest.fixture
def backfilled(braze_env, tmp_path):
    """A state folder after a clean backfill of day 1 (the sandbox keeps what it acknowledged)."""
    state = tmp_path / "state"
    assert cli("backfill", str(DAY1), "--state", str(state)) == 0
    return state


def day2_copy(folder: Path, users=None, purchases=None) -> Path:
    """Day 2 as exported tonight, with its users or purchases changed by `users(frame)` / `purchases(frame)`."""
    shutil.copytree(DAY2, folder)
    if users is not None:
        for part in (folder / "users").glob("*.parquet"):
            users(pl.read_parquet(part)).write_parquet(part)
    if purchases is not None:
        path = folder / "purchases.csv"
        frame = pl.read_csv(path, infer_schema=False)
        purchases(frame).write_csv(path)
    return folder


def sent(sandbox) -> int:
    """Objects the sandbox received, over every array."""
    return sum(sandbox.stats()["objects"].values())


def profiles(sandbox) -> dict[str, dict]:
    return {k: v for k, v in sandbox.profiles().items() if v.get("external_id")}


def test_broken_export_is_held_then_accepting_sends_exactly_the_held_plan(backfilled, braze_env, tmp_path, capsys):
    sandbox = braze_env
    broken = day2_copy(tmp_path / "tonight", users=lambda f: f.with_columns(
        pl.lit(None, f.schema["email"]).alias("email"), pl.lit(None, f.schema["loyalty_tier"]).alias("loyalty_tier")))
    before, sent_before = profiles(sandbox), sent(sandbox)
    from braze_migrate.cli.main import main

    capsys.readouterr()
    assert main(["plan", str(broken), "--state", str(backfilled), "--json"]) == 0  # `plan` shows the same figures
    dry = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert dry["guards"]["held"] == ["email", "loyalty_tier"]

    assert cli("sync", str(broken), "--state", str(backfilled)) == EXIT_HELD
    captured = capsys.readouterr()
    assert sent(sandbox) == sent_before and profiles(sandbox) == before  # nothing sent
    assert "guards: HOLD email, loyalty_tier" in captured.out  # the figures on stdout, the one line on stderr
    line = captured.err.strip().splitlines()[-1]
    assert line.startswith("braze-migrate: held by the guards, nothing was sent: email: ")
    assert "loyalty_tier: " in line and "would be unset" in line
    assert f"--state {backfilled} --accept email,loyalty_tier`" in line
    ledger = Ledger(backfilled / "ledger.sqlite")
    try:
        held_run = ledger.runs(limit=1)[0]
    finally:
        ledger.close()
    assert held_run.status == "held" and held_run.summary["status"] == "held"
    plan = backfilled / "runs" / held_run.run_id / "plan"
    planned = {p.name: p.stat().st_mtime_ns for p in [plan / "stats.json", *plan.glob("users_next/*.parquet")]}

    # Holding again is the same answer; accepting one column of two still holds.
    assert cli("sync", str(broken), "--state", str(backfilled), "--accept", "email") == EXIT_HELD
    assert "accept email,loyalty_tier" in capsys.readouterr().err
    assert sent(sandbox) == sent_before

    assert cli("sync", str(broken), "--state", str(backfilled), "--json", "--accept", "email,loyalty_tier") == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["run_id"] == held_run.run_id and summary["status"] == "completed"
    assert {p.name: p.stat().st_mtime_ns for p in [plan / "stats.json", *plan.glob("users_next/*.parquet")]
            } == planned  # not planned again
    ledger = Ledger(backfilled / "ledger.sqlite")
    try:
        planned_objects = sum(b["n_objects"] for b in ledger.batches(held_run.run_id))
    finally:
        ledger.close()
    assert summary["acknowledged_batches"] == summary["batches"]
    # The held plan, once, and the credentials check's one object (counted processed, and dropped: no such user).
    assert sent(sandbox) - sent_before == planned_objects + 2
    after = profiles(sandbox)
    emptied = [uid for uid, p in before.items() if p.get("email") and uid in after and not after[uid].get("email")]
    assert len(emptied) >= 200  # the accepted plan did unset them


def test_dataset_shrinking_by_half_is_held(backfilled, braze_env, tmp_path, capsys):
    half = day2_copy(tmp_path / "tonight", purchases=lambda f: f.head(f.height // 2))
    sent_before = sent(braze_env)
    capsys.readouterr()
    assert cli("sync", str(half), "--state", str(backfilled)) == EXIT_HELD
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "purchases: rows down" in line and "--accept rows:purchases`" in line
    assert sent(braze_env) == sent_before
    # The export is fixed (here: the full day 2): the held plan, of which nothing was sent, is dropped.
    assert cli("sync", str(DAY2), "--state", str(backfilled), "--json") == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["status"] == "completed" and sent(braze_env) > sent_before
    assert any("held by the guards, was dropped" in note for note in summary["notes"])


def test_normal_day2_sync_passes_untouched(backfilled, capsys):
    capsys.readouterr()
    assert cli("sync", str(DAY2), "--state", str(backfilled), "--json") == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["status"] == "completed" and summary["guards"]["held"] == [] and summary["acknowledged_batches"] > 0
