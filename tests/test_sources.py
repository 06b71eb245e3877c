"""connectors.sources: scanning export folders into lazy frames with their origin."""

from pathlib import Path

import polars as pl
import pytest

from connectors.sources import SourceError, ignored_files, reading, scan_folder, source_fingerprint

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_scan_folder_finds_single_files_and_parts():
    day1 = scan_folder(SAMPLES / "day1")
    assert list(day1) == ["users", "purchases", "events", "push_tokens"]
    assert {name: ds.format for name, ds in day1.items()} == {
        "users": "parquet",
        "purchases": "csv",
        "events": "ndjson",
        "push_tokens": "csv",
    }
    assert [Path(f).name for f in day1["push_tokens"].files] == ["part-0001.csv", "part-0002.csv"]
    assert [Path(f).name for f in scan_folder(SAMPLES / "day2")["users"].files] == [
        "part-0001.parquet",
        "part-0002.parquet",
    ]


def test_frames_carry_file_and_row_numbered_per_file(tmp_path):
    write(tmp_path / "purchases" / "part-0001.csv", "purchase_id\np1\np2\n")
    write(tmp_path / "purchases" / "part-0002.csv", "purchase_id\np3\n")
    df = scan_folder(tmp_path)["purchases"].frame.collect()
    assert df.schema["_file"] == pl.String and df.schema["_row"] == pl.Int64
    assert df.select(pl.col("_file").str.split("/").list.last(), "_row").rows() == [
        ("part-0001.csv", 1),
        ("part-0001.csv", 2),
        ("part-0002.csv", 1),
    ]


def test_csv_is_read_as_text_without_inference(tmp_path):
    write(tmp_path / "users.csv", "external_id,zip,age,vip\n000123,007,42,true\n")
    df = scan_folder(tmp_path)["users"].frame.collect()
    assert all(df.schema[c] == pl.String for c in ("external_id", "zip", "age", "vip"))
    assert df.row(0)[:4] == ("000123", "007", "42", "true")


def test_jsonl_parts_are_ndjson(tmp_path):
    write(tmp_path / "events" / "a.jsonl", '{"event_id": "e1", "properties": {"k": 1}}\n')
    ds = scan_folder(tmp_path)["events"]
    assert ds.format == "ndjson"
    # An event's properties as their JSON text: each row keeps its own value types (connectors/sources.py).
    assert ds.frame.collect()["properties"].to_list() == ['{"k": 1}']


def test_absent_datasets_are_left_out(tmp_path):
    write(tmp_path / "events.ndjson", '{"event_id": "e1"}\n')
    assert list(scan_folder(tmp_path)) == ["events"]


def test_unrecognised_files_are_ignored_and_listed(tmp_path):
    write(tmp_path / "README.md", "notes")
    write(tmp_path / "users.csv", "external_id\n1\n")
    write(tmp_path / "purchases" / "part-0001.csv", "purchase_id\np1\n")
    write(tmp_path / "purchases" / "manifest.txt", "x")
    write(tmp_path / "purchases" / "_SUCCESS", "")
    assert list(scan_folder(tmp_path)) == ["users", "purchases"]
    assert sorted(Path(f).name for f in ignored_files(tmp_path)) == ["README.md", "manifest.txt"]


def test_mixed_formats_in_one_dataset_raise(tmp_path):
    write(tmp_path / "purchases" / "part-0001.csv", "purchase_id\np1\n")
    write(tmp_path / "purchases" / "part-0002.ndjson", '{"purchase_id": "p2"}\n')
    with pytest.raises(SourceError, match=r"mixes formats \(csv, ndjson\)"):
        scan_folder(tmp_path)


def test_dataset_exported_twice_raises(tmp_path):
    write(tmp_path / "users.csv", "external_id\n1\n")
    write(tmp_path / "users" / "part-0001.csv", "external_id\n2\n")
    with pytest.raises(SourceError, match="exported more than once"):
        scan_folder(tmp_path)


def test_unsupported_format_of_a_dataset_raises(tmp_path):
    write(tmp_path / "users.xlsx", "")
    with pytest.raises(SourceError, match=r"users.xlsx: .xlsx is not a supported format"):
        scan_folder(tmp_path)


def test_empty_dataset_folder_raises(tmp_path):
    write(tmp_path / "events" / "_SUCCESS", "")
    with pytest.raises(SourceError, match="holds no .parquet, .csv, .ndjson or .jsonl part"):
        scan_folder(tmp_path)


def test_malformed_parquet_raises_source_error_naming_the_file(tmp_path):
    bad = write(tmp_path / "users.parquet", "not parquet at all")
    with pytest.raises(SourceError) as err:
        scan_folder(tmp_path)
    assert str(bad) in str(err.value) and "re-export" in str(err.value)


def test_empty_csv_raises_source_error(tmp_path):
    write(tmp_path / "events.csv", "")
    with pytest.raises(SourceError, match="events.csv: not a readable csv file"):
        scan_folder(tmp_path)


def test_malformed_ndjson_raises_source_error(tmp_path):
    write(tmp_path / "events.ndjson", '{"event_id": "e1"}\nnot json\n')
    with pytest.raises(SourceError, match="events.ndjson: not a readable ndjson file"):
        scan_folder(tmp_path)


def test_broken_record_deep_in_a_file_raises_source_error_when_read(tmp_path):
    write(tmp_path / "users.csv", "external_id,zip\n1,2\n3,4,5\n")
    ds = scan_folder(tmp_path)["users"]
    with pytest.raises(SourceError, match=r"could not read dataset 'users' \(.*users.csv\)"), reading(ds):
        ds.frame.collect()


def test_origin_column_in_the_export_raises(tmp_path):
    write(tmp_path / "users.csv", "external_id,_row\n1,2\n")
    with pytest.raises(SourceError, match="'_row' is reserved"):
        scan_folder(tmp_path)


def test_missing_source_folder_raises(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        scan_folder(tmp_path / "nope")


def test_parquet_integer_external_id_is_passed_through_untouched(tmp_path):
    pl.DataFrame({"external_id": [123]}).write_parquet(tmp_path / "users.parquet")
    assert scan_folder(tmp_path)["users"].frame.collect_schema()["external_id"] == pl.Int64


def test_source_fingerprint_is_stable_and_follows_the_files(tmp_path):
    f = write(tmp_path / "users.csv", "external_id\n1\n")
    write(tmp_path / "README.md", "notes")
    first = source_fingerprint(tmp_path)
    assert source_fingerprint(tmp_path) == first
    write(tmp_path / "README.md", "other notes")
    assert source_fingerprint(tmp_path) == first
    f.write_text("external_id\n1\n2\n")
    assert source_fingerprint(tmp_path) != first
