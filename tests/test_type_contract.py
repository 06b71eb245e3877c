"""Issue 13 point 5: a column keeps the type Braze first acknowledged; a bad cell is rejected, not a retype."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import polars as pl

from tests.cli_run import run_cli
from tests.conftest import API_KEY
from transforms.type_contract import enforce_types


def night(folder: Path, counts: list[str], zips: list[str]) -> Path:
    folder.mkdir(parents=True)
    with open(folder / "users.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["external_id", "orders_count", "zip"])
        for i, (count, zip_code) in enumerate(zip(counts, zips)):
            w.writerow([f"u{i}", count, zip_code])
    return folder


run = run_cli


def test_one_bad_cell_is_rejected_instead_of_retyping_the_column(sandbox, tmp_path):
    env = {**os.environ, "BRAZE_REST_ENDPOINT": sandbox.url, "BRAZE_API_KEY": API_KEY}
    state = tmp_path / "state"
    first = run("backfill", night(tmp_path / "n1", ["1", "2", "3"], ["0150", "0151", "0152"]), "--state", state,
                "--no-prefect", "--json", env=env)
    assert first.returncode == 0, first.stderr[-2000:]
    assert sandbox.profile("u0")["custom_attributes"]["orders_count"] == 1
    # Night 2: one `n/a` (the column would be text) and zip codes without a leading zero (would be numbers).
    second = run("sync", night(tmp_path / "n2", ["1", "n/a", "4"], ["0150", "151", "152"]), "--state", state,
                 "--no-prefect", "--json", env=env)
    assert second.returncode == 0, second.stderr[-2000:]
    summary = json.loads(second.stdout.strip().splitlines()[-1])
    assert summary["datasets"]["users"]["rejected_cells"] >= 1
    profiles = {u: sandbox.profile(u)["custom_attributes"] for u in ("u0", "u1", "u2")}
    assert [p["orders_count"] for p in profiles.values()] == [1, 2, 4]  # numbers, u1 kept its last value
    assert [p["zip"] for p in profiles.values()] == ["0150", "151", "152"]  # still text
    rejects = pl.read_csv(summary["rejects_file"], infer_schema=False)
    row = rejects.filter(pl.col("column") == "orders_count")
    assert row.height == 1 and row["key"][0] == "u1" and "from number" in row["reason"][0]
    assert "--accept-type-change orders_count" in row["reason"][0]


def test_a_deliberate_change_is_accepted_by_name(sandbox, tmp_path):
    env = {**os.environ, "BRAZE_REST_ENDPOINT": sandbox.url, "BRAZE_API_KEY": API_KEY}
    state = tmp_path / "state"
    assert run("backfill", night(tmp_path / "n1", ["1", "2"], ["a", "b"]), "--state", state, "--no-prefect",
               env=env).returncode == 0
    changed = night(tmp_path / "n2", ["gold", "silver"], ["a", "b"])
    done = run("sync", changed, "--state", state, "--no-prefect", "--accept-type-change", "orders_count", env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert sandbox.profile("u1")["custom_attributes"]["orders_count"] == "silver"
    # The new type is the contract now: a number next is a number *in text*.
    again = run("sync", night(tmp_path / "n3", ["7", "silver"], ["a", "b"]), "--state", state, "--no-prefect",
                env=env)
    assert again.returncode == 0 and sandbox.profile("u0")["custom_attributes"]["orders_count"] == "7"


def test_enforcement_is_a_pure_lazy_transform():
    good = pl.LazyFrame({"external_id": ["a", "b"], "_file": ["f", "f"], "_row": [1, 2], "_dropped": [[], []],
                         "n": ['"5"', '[1]']})
    out, rejects = enforce_types(good, {"n": "number"})
    assert isinstance(out, pl.LazyFrame) and isinstance(rejects, pl.LazyFrame)
    frame = out.collect()
    assert frame["n"].to_list() == ["5", None] and frame["_dropped"].to_list() == [[], ["n"]]
    assert rejects.collect()["reason"][0].startswith("would change the type of n from number")
