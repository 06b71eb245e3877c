"""Exports written as one file per dataset (a warehouse unload, a `COPY` job) are read in bounded batches, also
inside one Parquet row group, and a backfill of them is exact against the sandbox."""

from __future__ import annotations

import json
from collections import Counter

import polars as pl
import pyarrow.parquet as pq
import pytest

from bench import history
from connectors.sources import iter_batches, scan_folder
from tests.test_backfill import known_profiles, run


@pytest.mark.parametrize("events,purchases", [(3000, 1400), (1500, 700)])  # the history and its half
def test_a_backfill_of_single_file_history_exports_is_exact(events, purchases, sandbox, tmp_path, monkeypatch):
    from braze_migrate.plan import planner

    monkeypatch.setattr(history, "ROWS_PER_FILE", 1000)  # row groups of 1,000 rows in one file
    monkeypatch.setattr(planner, "BATCH_ROWS", 300)  # batches that cut across row groups
    monkeypatch.setattr(planner, "SPOOL_ROWS", 700)
    made = history.ensure_history(200, events, purchases, tmp_path / "export", single_file=True)
    assert pq.ParquetFile(made.folder / "events.parquet").metadata.num_row_groups == -(-events // 1000)

    summary = run("backfill", made.folder, tmp_path / "state", sandbox.url, users_per_partition=50)
    assert summary["status"] == "completed"
    profiles = known_profiles(sandbox)
    sent_events = Counter((uid, e["name"]) for uid, p in profiles.items() for e in p["events"])
    sent_purchases = Counter((uid, p_["product_id"]) for uid, p in profiles.items() for p_ in p["purchases"])
    ev = pl.read_parquet(made.folder / "events.parquet")
    pu = pl.read_parquet(made.folder / "purchases.parquet")
    assert sent_events == Counter(zip(ev["external_id"], ev["name"], strict=True))
    assert sent_purchases == Counter(zip(pu["external_id"], pu["product_id"], strict=True))
    assert sum(sent_events.values()) == events and sum(sent_purchases.values()) == purchases


def test_batches_cut_inside_one_row_group_and_keep_order_and_row_numbers(tmp_path):
    frame = pl.DataFrame({"external_id": [f"u{i}" for i in range(2500)], "n": list(range(2500))})
    (tmp_path / "users.parquet").parent.mkdir(exist_ok=True)
    frame.write_parquet(tmp_path / "users.parquet", row_group_size=100_000)  # one row group
    assert pq.ParquetFile(tmp_path / "users.parquet").metadata.num_row_groups == 1
    ds = scan_folder(tmp_path)["users"]
    batches = list(iter_batches(ds, 400))
    assert max(b.height for b in batches) == 400 and len(batches) == 7
    whole = pl.concat(batches)
    assert whole.equals(ds.frame.collect())
    assert whole["_row"].to_list() == list(range(1, 2501))


HOSTILE_CSV = ('\ufeffexternal_id,note,tag,note\n1,,"",x\n2,"multi\nline ""quoted""",é ü 😀,NULL\n'
               '3,N/A, padded ,\n\n' + "".join(f'u{i},"a,b\nc",{i},\n' for i in range(400)))


@pytest.mark.parametrize("name", ["users.csv", "users.csv.gz", "users.ndjson"])
def test_csv_and_ndjson_are_parsed_in_blocks_with_the_rows_of_the_whole_file(name, tmp_path, monkeypatch):
    """Blocks cut at record ends only (never inside quotes), so quoted newlines, doubled quotes, a byte-order
    mark, blank lines and duplicate header names come out exactly as Polars reads the whole file."""
    import gzip

    from connectors import sources

    monkeypatch.setattr(sources, "TEXT_BLOCK", 97)  # many blocks, most of them cut inside a quoted field
    if name.endswith(".ndjson"):
        rows = [{"external_id": f"u{i}", "n": i, "nested": {"a": [i]} if i % 3 else None,
                 **({"late": "x"} if i == 350 else {})} for i in range(400)]
        text = "\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n"
    else:
        text = HOSTILE_CSV
    data = text.encode()
    (tmp_path / name).write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    ds = scan_folder(tmp_path)["users"]
    whole = ds.frame.collect()
    batches = list(iter_batches(ds, 50))
    assert len(batches) > 5 and pl.concat(batches).equals(whole)
    assert whole.height >= 400


@pytest.mark.parametrize("fmt", ["csv", "ndjson"])
def test_csv_and_ndjson_are_read_in_chunks_with_the_same_rows_as_the_frame(fmt, tmp_path):
    frame = pl.DataFrame({"external_id": [f"u{i}" for i in range(3000)], "n": [str(i) for i in range(3000)]})
    if fmt == "csv":
        frame.write_csv(tmp_path / "users.csv")
    else:
        frame.write_ndjson(tmp_path / "users.ndjson")
    ds = scan_folder(tmp_path)["users"]
    whole = pl.concat(list(iter_batches(ds, 500)))
    assert whole.equals(ds.frame.collect())
    assert whole["_row"].to_list() == list(range(1, 3001))
