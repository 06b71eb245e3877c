"""data/samples: the generator is deterministic and the committed files are exactly what it writes."""

import importlib.util
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from connectors.sources import scan_folder
from transforms import normalize as N

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"
NORMALIZE = {
    "users": N.normalize_users,
    "purchases": N.normalize_purchases,
    "events": N.normalize_events,
    "push_tokens": N.normalize_push_tokens,
}


@pytest.fixture(scope="module")
def generate():
    spec = importlib.util.spec_from_file_location("samples_generate", SAMPLES / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def data_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def read(path: Path) -> pl.DataFrame:
    if path.suffix == ".parquet":
        return pl.read_parquet(path)
    if path.suffix == ".csv":
        return pl.read_csv(path, infer_schema=False)
    return pl.read_ndjson(path, infer_schema_length=None)


def normalized(folder: Path) -> dict[str, tuple[pl.DataFrame, pl.DataFrame]]:
    out = {}
    for name, ds in scan_folder(folder).items():
        result = NORMALIZE[name](ds.frame)
        out[name] = tuple(pl.collect_all([result.good, result.rejects]))
    return out


def test_generator_is_deterministic(generate):
    for day in (1, 2):
        first, second = generate.sample_frames(day), generate.sample_frames(day)
        for name in first:
            assert_frame_equal(first[name], second[name])


def test_samples_on_disk_are_what_the_generator_writes(generate, tmp_path):
    generate.write_samples(tmp_path)
    for day in ("day1", "day2"):
        committed, fresh = SAMPLES / day, tmp_path / day
        assert data_files(committed) == data_files(fresh)
        for rel in data_files(fresh):
            assert_frame_equal(read(committed / rel), read(fresh / rel))


def test_samples_are_small():
    size = sum(
        p.stat().st_size for day in ("day1", "day2") for p in (SAMPLES / day).rglob("*") if p.is_file()
    )
    assert size < 600_000


def test_day1_rejects_are_the_planted_ones():
    out = normalized(SAMPLES / "day1")
    rejects = {name: r.select("key", "column", "reason") for name, (_, r) in out.items()}
    users = rejects["users"]
    assert users.filter(pl.col("column").is_not_null() & pl.col("key").is_not_null())["key"].to_list() == [
        "000007",
        "000011",
        "000013",
        "000017",
        "000019",
        "000023",
        "000029",
        "000031",
        "000037",
    ]
    assert users.filter(pl.col("reason") == N.SUPERSEDED)["key"].sort().to_list() == [
        "000042",
        "000042",
        "000043",
    ]
    assert users.filter(pl.col("column") == "$legacy_score").height == 1
    assert set(users["reason"]) >= {N.BAD_EMAIL_ID, N.EXTERNAL_ID_TOO_LONG}
    assert sorted(rejects["purchases"]["key"].drop_nulls()) == sorted(
        [
            "PX-CURRENCY",
            "PX-QTY0",
            "PX-QTY101",
            "PX-NOTIME",
            "PX-BADTIME",
            "PX-NEGATIVE",
            "PX-PRICETEXT",
            "PX-BADJSON",
            "PX-NOTOBJECT",
            "PX-RESERVED",
            "PX-DOLLARKEY",
            "PX-MANYKEYS",
            "PX-LONGPRODUCT",
            "PX-NOUSER",
            "P000001-01",
        ]
    )
    assert sorted(rejects["events"]["key"]) == sorted(
        ["EX-NOTIME", "EX-NONAME", "EX-LONGNAME", "EX-NOUSER", "EX-RESERVED", "EX-DOLLARKEY", "E000001-01"]
    )
    assert sorted(rejects["push_tokens"]["reason"]) == sorted(
        [N.DUPLICATE_TOKEN, N.WEB_TOKEN, N.BAD_DEVICE_ID, "missing app_id", "missing token", N.BAD_PLATFORM]
    )
    good_users = out["users"][0]
    assert good_users.filter(pl.col("external_id") == "000042")["loyalty_tier"].to_list() == ['"gold"']
    assert good_users.filter(pl.col("external_id") == "000123").height == 1
    assert good_users.filter(pl.col("zip").str.starts_with('"0')).height > 0


def test_day2_is_the_next_night(generate):
    day1, day2 = normalized(SAMPLES / "day1"), normalized(SAMPLES / "day2")
    p1, p2 = day1["purchases"][0], day2["purchases"][0]
    assert set(p1["purchase_id"]) < set(p2["purchase_id"])
    changed = p1.join(p2, on="purchase_id").filter(pl.col("fingerprint") != pl.col("fingerprint_right"))
    assert changed["purchase_id"].to_list() == ["P000001-02"]
    assert set(day1["events"][0]["event_id"]) < set(day2["events"][0]["event_id"])
    t1, t2 = day1["push_tokens"][0], day2["push_tokens"][0]
    moved = t1.join(t2, on=["app_id", "token"]).filter(pl.col("external_id") != pl.col("external_id_right"))
    assert moved.select("external_id", "external_id_right").rows() == [("000003", generate.MOVED_TO)]
    u1, u2 = set(day1["users"][0]["external_id"]), set(day2["users"][0]["external_id"])
    assert u1 - u2 and u2 - u1


@pytest.mark.parametrize("fmt", ["parquet", "csv", "ndjson"])
def test_benchmark_mode_writes_clean_exports_in_every_format(generate, tmp_path, fmt):
    generate.write_benchmark(tmp_path, 60, fmt, seed=3)
    for day in ("day1", "day2"):
        datasets = scan_folder(tmp_path / day)
        assert {ds.format for ds in datasets.values()} == {fmt}
        for name, (good, rejects) in normalized(tmp_path / day).items():
            assert good.height > 0 and rejects.height == 0, (name, rejects)
