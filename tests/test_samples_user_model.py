"""data/samples/user_model: exactly what generate.py writes, and two nights of it through the CLI and the
sandbox leave Braze holding what the export says (nested objects, pets by id, groups, the erasure), billed
exactly the data points the plan counted."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import API_KEY

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"


def _generator():
    spec = importlib.util.spec_from_file_location("samples_generate_user_model", SAMPLES / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_user_model_samples_are_what_the_generator_writes(tmp_path):
    _generator().write_user_model(tmp_path)
    committed = sorted(p.relative_to(SAMPLES).as_posix() for p in (SAMPLES / "user_model").rglob("*") if p.is_file())
    fresh = sorted(p.relative_to(tmp_path).as_posix() for p in (tmp_path / "user_model").rglob("*") if p.is_file())
    assert committed == fresh
    for name in committed:
        assert (SAMPLES / name).read_bytes() == (tmp_path / name).read_bytes(), name


def test_two_nights_of_the_user_model_sample_through_the_sandbox(sandbox, tmp_path):
    env = {**os.environ, "BRAZE_REST_ENDPOINT": sandbox.url, "BRAZE_API_KEY": API_KEY,
           "PREFECT_HOME": str(tmp_path / "prefect"), "BRAZE_MIGRATE_DELETE_MAX_SHARE": "1"}
    state = tmp_path / "state"
    for night, kind in ((1, "backfill"), (2, "sync")):
        billed = sandbox.stats()["data_points"]
        r = subprocess.run([sys.executable, "-m", "braze_migrate.cli.main", kind, str(SAMPLES / "user_model" / f"night{night}"),
                            "--state", str(state), "--no-prefect", "--json"],
                           capture_output=True, text=True, env=env, timeout=300, check=False)
        assert r.returncode == 0, r.stderr[-2000:]
        summary = json.loads(r.stdout)
        assert summary["data_points"]["sent"] == sandbox.stats()["data_points"] - billed  # planned = billed
        rows = {u["external_id"]: u for u in _generator().user_model_frames(night)["users"]}
        for eid in ("u1", "u2", "u3", "u4", "u5") + (("u6",) if night == 1 else ()):
            custom = sandbox.profile(eid)["custom_attributes"]
            want = rows[eid]
            assert {p["id"]: p for p in custom.get("pets", [])} == {p["id"]: p for p in want.get("pets[id]") or []}
            assert custom.get("book") == want.get("book")
            groups = sandbox.profile(eid).get("subscription_groups", {})
            assert groups == {g["id"]: g["state"] for g in want.get("subscription_groups", [])}
        rejected = {(r["key"], r["column"]) for r in _rejects(summary["rejects_file"])}
        assert {("u7", "pets[id]"), ("u8", "subscription_groups")} <= rejected
    assert sandbox.profile("u6") is None and summary["deletes"]["deleted_ids"] == ["u6"]
    assert ("", "external_id") in rejected and summary["datasets"]["user_deletes"]["rejected"] == 1


def _rejects(path: str) -> list[dict]:
    import csv

    with open(path, newline="") as fh:
        return [{k: v or "" for k, v in r.items()} for r in csv.DictReader(fh)]


def test_plan_shows_requests_and_data_points_of_each_part_of_the_user_model(sandbox, tmp_path):
    env = {**os.environ, "BRAZE_REST_ENDPOINT": sandbox.url, "BRAZE_API_KEY": API_KEY,
           "PREFECT_HOME": str(tmp_path / "prefect")}
    state = tmp_path / "state"
    first = subprocess.run([sys.executable, "-m", "braze_migrate.cli.main", "backfill", str(SAMPLES / "user_model" / "night1"),
                            "--state", str(state), "--no-prefect", "--json"],
                           capture_output=True, text=True, env=env, timeout=300, check=False)
    assert first.returncode == 0, first.stderr[-2000:]
    r = subprocess.run([sys.executable, "-m", "braze_migrate.cli.main", "plan", str(SAMPLES / "user_model" / "night2"),
                        "--state", str(state), "--json"], capture_output=True, text=True, env=env, timeout=300,
                       check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    plan = json.loads(r.stdout)
    model = plan["user_model"]
    assert model["arrays_of_objects"] == {"objects": 3, "whole": 0, "$add": 1, "$remove": 1, "$update": 1,
                                          "data_points": 3 + 1 + 1}
    assert model["nested_objects"] == {"objects": 1, "merged": 1, "whole": 0, "data_points": 1}
    assert model["subscription_groups"] == {"objects": 1, "groups": 1, "data_points": 0}
    assert plan["deletes"] == {"users": 1, "requests": 1, "rejected_rows": 1, "data_points": 0,
                               "held_by_guard": False}
