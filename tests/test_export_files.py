"""Issue 13 point 6: every file of an export folder is read or named as unread, with the reason."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import polars as pl
import pytest

from braze_migrate.plan.planner import build_plan
from connectors.sources import SourceError, scan_folder, unread_files
from connectors.state.snapshot import Snapshot

DAY1 = Path(__file__).resolve().parents[1] / "data" / "samples" / "day1"


def hostile_day1(root: Path) -> Path:
    """day1 as a careless export job writes it: capitals, gzip, a singular folder and an unknown file."""
    root.mkdir()
    shutil.copy(DAY1 / "users.parquet", root / "USERS.parquet")
    shutil.copy(DAY1 / "purchases.csv", root / "Purchases.csv")
    (root / "events.ndjson.gz").write_bytes(gzip.compress((DAY1 / "events.ndjson").read_bytes()))
    (root / "push_token").mkdir()
    for part in sorted((DAY1 / "push_tokens").iterdir()):
        (root / "push_token" / (part.name + ".gz")).write_bytes(gzip.compress(part.read_bytes()))
    (root / "orders.csv").write_text("order_id,external_id\no1,000001\n")
    (root / "push_token" / "manifest.txt").write_text("2 parts")
    return root


def test_case_gzip_and_singular_names_are_read_as_their_datasets(tmp_path):
    source = hostile_day1(tmp_path / "export")
    found = scan_folder(source)
    assert list(found) == ["users", "purchases", "events", "push_tokens"]
    for name in ("purchases", "events", "push_tokens"):
        clean = scan_folder(DAY1)[name].frame.drop("_file").collect()
        assert found[name].frame.drop("_file").collect().equals(clean), name


def test_unknown_files_are_named_with_a_reason(tmp_path):
    source = hostile_day1(tmp_path / "export")
    unread = {Path(u.path).name: u.reason for u in unread_files(source)}
    assert set(unread) == {"orders.csv", "manifest.txt"}
    assert "'orders' is not a dataset of the export" in unread["orders.csv"]
    assert "not a data format" in unread["manifest.txt"]


def test_a_plan_of_the_hostile_folder_reads_every_dataset(tmp_path):
    source = hostile_day1(tmp_path / "export")
    info = build_plan(str(source), Snapshot(tmp_path / "state"), tmp_path / "plan", batch_size=75,
                      batch_mode="combined", resend_in_doubt=False)
    clean = build_plan(str(DAY1), Snapshot(tmp_path / "state2"), tmp_path / "plan2", batch_size=75,
                       batch_mode="combined", resend_in_doubt=False)
    assert info.stats["read"] == clean.stats["read"] and set(info.stats["read"]) == {
        "users", "purchases", "events", "push_tokens"}


def test_a_dataset_twice_under_two_spellings_is_refused(tmp_path):
    (tmp_path / "users.csv").write_text("external_id\n1\n")
    (tmp_path / "Users").mkdir()
    (tmp_path / "Users" / "part-1.csv").write_text("external_id\n2\n")
    with pytest.raises(SourceError, match="more than once"):
        scan_folder(tmp_path)


def test_gzipped_parquet_is_refused_clearly(tmp_path):
    pl.DataFrame({"external_id": ["1"]}).write_parquet(tmp_path / "u.parquet")
    (tmp_path / "users.parquet.gz").write_bytes(gzip.compress((tmp_path / "u.parquet").read_bytes()))
    (tmp_path / "u.parquet").unlink()
    with pytest.raises(SourceError, match="compressed inside"):
        scan_folder(tmp_path)
