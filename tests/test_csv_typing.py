"""transforms.csv_typing: one type per CSV column, decided from all its values."""

import datetime as dt

import polars as pl

from transforms.csv_typing import DATETIME_UTC, apply_csv_types, infer_csv_types, parse_datetime

UTC = dt.UTC


def typed(**columns: list) -> tuple[dict, pl.DataFrame]:
    lf = pl.LazyFrame(columns, schema={c: pl.String for c in columns})
    types = infer_csv_types(lf)
    return types, apply_csv_types(lf, types).collect()


def test_true_false_in_any_case_are_booleans():
    types, df = typed(vip=["true", "FALSE", "True", ""])
    assert types["vip"] == pl.Boolean
    assert df["vip"].to_list() == [True, False, True, None]


def test_integers_are_ints():
    types, df = typed(n=["1", "-2", " 3 ", "+4"])
    assert types["n"] == pl.Int64
    assert df["n"].to_list() == [1, -2, 3, 4]


def test_decimals_are_floats_and_integers_mixed_in_are_floats_too():
    types, df = typed(x=["1", "2.5", "1e3", ".5"])
    assert types["x"] == pl.Float64
    assert df["x"].to_list() == [1.0, 2.5, 1000.0, 0.5]


def test_leading_zeros_keep_the_whole_column_text():
    types, df = typed(zip=["12345", "01234", "99999"], sku=["007", "8", "9"])
    assert types["zip"] == pl.String and types["sku"] == pl.String
    assert df["zip"].to_list() == ["12345", "01234", "99999"]


def test_zero_and_decimal_below_one_are_not_leading_zeros():
    types, _ = typed(n=["0", "5"], x=["0.5", "2"])
    assert types["n"] == pl.Int64 and types["x"] == pl.Float64


def test_a_column_of_mixed_kinds_stays_text():
    types, df = typed(v=["1", "abc", "true"], w=["2024-05-01", "3", "4"])
    assert types["v"] == pl.String and types["w"] == pl.String
    assert df["v"].to_list() == ["1", "abc", "true"]


def test_integers_too_large_for_int64_stay_text():
    types, _ = typed(id=["12345678901234567890", "1"])
    assert types["id"] == pl.String


def test_iso_dates_are_dates():
    types, df = typed(d=["2024-05-01", "2024-02-29", ""])
    assert types["d"] == pl.Date
    assert df["d"].to_list() == [dt.date(2024, 5, 1), dt.date(2024, 2, 29), None]


def test_iso_datetimes_are_utc_datetimes_with_offsets_converted():
    types, df = typed(
        t=["2024-05-01T12:00:00Z", "2024-05-01 12:00", "2024-05-01T14:00:00+02:00", "2024-05-01"]
    )
    assert types["t"] == DATETIME_UTC
    assert df["t"].to_list() == [
        dt.datetime(2024, 5, 1, 12, tzinfo=UTC),
        dt.datetime(2024, 5, 1, 12, tzinfo=UTC),
        dt.datetime(2024, 5, 1, 12, tzinfo=UTC),
        dt.datetime(2024, 5, 1, tzinfo=UTC),
    ]


def test_an_impossible_or_non_iso_date_keeps_the_column_text():
    types, _ = typed(d=["2024-05-01", "2024-02-30"])
    short, _ = typed(d=["2024-05-01", "2024-5-1"])
    assert types["d"] == pl.String and short["d"] == pl.String


def test_empty_cells_are_null_and_an_all_empty_column_is_text():
    types, df = typed(e=["", " ", None], s=["a", "", " "])
    assert types["e"] == pl.String
    assert df["e"].to_list() == [None, None, None]
    assert df["s"].to_list() == ["a", None, None]


def test_nan_in_a_numeric_column_reads_as_a_float():
    types, df = typed(x=["1.5", "NaN"])
    assert types["x"] == pl.Float64
    assert df["x"].is_nan().to_list() == [False, True]


def test_origin_and_excluded_columns_are_not_typed():
    lf = pl.LazyFrame({"_file": ["a.csv"], "_row": [1], "id": ["1"], "n": ["2"]})
    assert infer_csv_types(lf, exclude=["id"]) == {"n": pl.Int64}


def test_apply_leaves_non_text_columns_alone():
    lf = pl.LazyFrame({"n": [1, 2]})
    assert apply_csv_types(lf, {"n": pl.Boolean}).collect()["n"].to_list() == [1, 2]


def test_parse_datetime_accepts_iso_variants_and_rejects_the_rest():
    df = pl.DataFrame(
        {
            "s": [
                "2024-05-01T12:00+0530",
                "2024-05-01T12:00:00.123456789Z",
                "2024-05-01T12:00:00-01",
                "2024-05-01 12:00:00 +02:00",
                "2024-13-01",
                "2024-05-01T25:00",
                "yesterday",
                None,
            ]
        }
    )
    out = df.lazy().select(parse_datetime(pl.col("s"))).collect().to_series().to_list()
    assert out == [
        dt.datetime(2024, 5, 1, 6, 30, tzinfo=UTC),
        dt.datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC),
        dt.datetime(2024, 5, 1, 13, tzinfo=UTC),
        dt.datetime(2024, 5, 1, 10, tzinfo=UTC),
        None,
        None,
        None,
        None,
    ]
