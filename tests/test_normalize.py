"""transforms.normalize: one test per normalization rule and per rejection reason."""

import datetime as dt
import json

import polars as pl
import polars_hash as plh
import pytest

from transforms import normalize as N

UTC = dt.UTC


def source(file: str = "f.parquet", **columns) -> pl.LazyFrame:
    """A frame as connectors.sources hands it over: the columns plus `_file` and `_row`."""
    n = len(next(iter(columns.values())))
    return pl.LazyFrame(columns, strict=False).with_columns(
        pl.lit(file).alias("_file"), pl.int_range(1, n + 1, dtype=pl.Int64).alias("_row")
    )


def broadcast(columns: dict) -> dict:
    """Repeat one-value lists to the length of the longest column."""
    n = max(len(v) for v in columns.values())
    return {c: v * n if isinstance(v, list) and len(v) == 1 else v for c, v in columns.items()}


def run(result: N.Normalized) -> tuple[pl.DataFrame, pl.DataFrame]:
    good, rejects = pl.collect_all([result.good, result.rejects])
    assert rejects.schema == N.REJECTS_SCHEMA
    return good, rejects


def users(**columns) -> tuple[pl.DataFrame, pl.DataFrame]:
    return run(N.normalize_users(source(**columns)))


def purchases(**overrides) -> tuple[pl.DataFrame, pl.DataFrame]:
    columns = {
        "purchase_id": ["p1"],
        "external_id": ["u1"],
        "product_id": ["sku-1"],
        "currency": ["USD"],
        "price": ["9.99"],
        "time": ["2024-05-01T12:00:00Z"],
    }
    columns.update(overrides)
    columns = broadcast(columns)
    return run(N.normalize_purchases(source("purchases.csv", **columns)))


def events(**overrides) -> tuple[pl.DataFrame, pl.DataFrame]:
    columns = {
        "event_id": ["e1"],
        "external_id": ["u1"],
        "name": ["app_open"],
        "time": ["2024-05-01T12:00:00Z"],
    }
    columns.update(overrides)
    columns = broadcast(columns)
    return run(N.normalize_events(source("events.ndjson", **columns)))


def tokens(**overrides) -> tuple[pl.DataFrame, pl.DataFrame]:
    columns = {
        "external_id": ["u1"],
        "app_id": ["app"],
        "token": ["tok-1"],
        "device_id": ["device-0001"],
        "platform": ["ios"],
    }
    columns.update(overrides)
    columns = broadcast(columns)
    return run(N.normalize_push_tokens(source("tokens.csv", **columns)))


def only_reason(rejects: pl.DataFrame) -> str:
    assert rejects.height == 1, rejects
    return rejects["reason"][0]


# --- users: keys and duplicates -----------------------------------------------------------------------


def test_users_good_has_the_design_columns_in_input_order():
    good, _ = users(external_id=["u1"], zip=["007"], email=["a@example.com"], vip=[True])
    assert good.columns == ["external_id", "_file", "_row", "_dropped", "zip", "email", "vip"]
    assert good.schema["_dropped"] == pl.List(pl.String)
    assert all(good.schema[c] == pl.String for c in ("external_id", "zip", "email", "vip"))


def test_external_id_stored_as_integer_becomes_text():
    good, _ = users(external_id=[123, 7])
    assert good["external_id"].to_list() == ["123", "7"]


def test_external_id_text_with_leading_zeros_stays_text_and_is_trimmed():
    good, _ = users(external_id=[" 000123 "])
    assert good["external_id"].to_list() == ["000123"]


def test_missing_external_id_rejects_the_row():
    good, rejects = users(external_id=["u1", None, "  "])
    assert good["external_id"].to_list() == ["u1"]
    assert rejects["reason"].to_list() == [N.MISSING_IDENTIFIER] * 2
    assert rejects["column"].to_list() == [None, None]


def test_external_id_longer_than_987_bytes_rejects_the_row():
    good, rejects = users(external_id=["é" * 494, "é" * 493])
    assert good["external_id"].to_list() == ["é" * 493]
    assert only_reason(rejects) == N.EXTERNAL_ID_TOO_LONG


def test_repeated_user_keeps_the_latest_updated_at_and_supersedes_the_others():
    good, rejects = users(
        external_id=["u1", "u1", "u1"],
        updated_at=[dt.datetime(2024, 1, 1), dt.datetime(2024, 3, 1), dt.datetime(2024, 2, 1)],
        tier=["a", "b", "c"],
    )
    assert good.select("_row", "tier").rows() == [(2, '"b"')]
    assert rejects.select("key", "row", "reason").rows() == [("u1", 1, N.SUPERSEDED), ("u1", 3, N.SUPERSEDED)]


def test_updated_at_tie_goes_to_the_later_row_in_file_order():
    good, rejects = users(external_id=["u1", "u1"], updated_at=["2024-01-01", "2024-01-01"], tier=["a", "b"])
    assert good["tier"].to_list() == ['"b"']
    assert rejects["row"].to_list() == [1]


def test_without_updated_at_the_later_row_wins():
    good, _ = users(external_id=["u1", "u1"], tier=["a", "b"])
    assert good["tier"].to_list() == ['"b"']


def test_unparseable_updated_at_is_reported_and_counts_as_oldest():
    good, rejects = users(external_id=["u1", "u1"], updated_at=["2024-01-01", "soon"], tier=["a", "b"])
    assert good["tier"].to_list() == ['"a"']
    assert rejects.filter(pl.col("column") == "updated_at").select("value", "reason").rows() == [
        ("soon", N.BAD_UPDATED_AT)
    ]


def test_updated_at_is_not_an_attribute():
    good, _ = users(external_id=["u1"], updated_at=[dt.datetime(2024, 1, 1)])
    assert "updated_at" not in good.columns


def test_users_are_sorted_by_external_id():
    good, _ = users(external_id=["b", "c", "a"])
    assert good["external_id"].to_list() == ["a", "b", "c"]


# --- users: Braze JSON of attribute values ---------------------------------------------------------------


def test_attribute_values_are_canonical_braze_json():
    good, rejects = users(
        external_id=["u1"],
        s=[' he said "hi" '],
        i=[12],
        f=[1.5],
        b=[True],
        d=[dt.date(2024, 5, 1)],
        naive=[dt.datetime(2024, 5, 1, 12, 0, 0, 123456)],
        tags=[["a", "b"]],
        obj=[{"k": 1, "at": dt.datetime(2024, 5, 1, 12)}],
    )
    assert rejects.height == 0
    assert good.select("s", "i", "f", "b", "d", "naive", "tags", "obj").row(0) == (
        '"he said \\"hi\\""',
        "12",
        "1.5",
        "true",
        '"2024-05-01"',
        '"2024-05-01T12:00:00.123Z"',
        '["a","b"]',
        '{"k":1,"at":{"$time":"2024-05-01T12:00:00.000Z"}}',
    )


def test_timezone_aware_datetimes_are_converted_to_utc():
    aware = pl.Series([dt.datetime(2024, 5, 1, 14, tzinfo=UTC)]).dt.convert_time_zone("Europe/Berlin")
    good, _ = users(external_id=["u1"], seen=aware)
    assert good["seen"].to_list() == ['"2024-05-01T14:00:00.000Z"']


def test_empty_values_are_null():
    good, rejects = users(external_id=["u1"], s=["  "], tags=[[]], n=pl.Series([None], dtype=pl.Int64))
    assert good.select("s", "tags", "n").row(0) == (None, None, None)
    assert rejects.height == 0


def test_csv_types_type_custom_attributes_but_not_profile_fields():
    lf = source(
        "users.csv", external_id=["000123"], phone=["+4915112345678"], zip=["01234"], n=["42"], ok=["TRUE"]
    )
    types = {"phone": pl.Int64, "zip": pl.String, "n": pl.Int64, "ok": pl.Boolean, "external_id": pl.Int64}
    good, _ = run(N.normalize_users(lf, types))
    assert good.select("external_id", "phone", "zip", "n", "ok").row(0) == (
        "000123",
        '"+4915112345678"',
        '"01234"',
        "42",
        "true",
    )


# --- users: cells dropped -------------------------------------------------------------------------------


def test_invalid_email_drops_that_cell_only_and_hides_the_value():
    good, rejects = users(external_id=["u1"], email=["not-an-email"], tier=["gold"])
    assert good.select("email", "tier", "_dropped").row(0) == (None, '"gold"', ["email"])
    assert rejects.select("key", "column", "value", "reason").rows() == [("u1", "email", None, N.BAD_EMAIL)]


def test_gender_is_upper_cased_and_unknown_gender_dropped():
    good, rejects = users(external_id=["u1", "u2"], gender=["f", "X"])
    assert good["gender"].to_list() == ['"F"', None]
    assert rejects.select("key", "value", "reason").rows() == [("u2", "X", N.BAD_GENDER)]


def test_unknown_subscription_state_is_dropped():
    good, rejects = users(
        external_id=["u1", "u2"], email_subscribe=["Opted_In", "yes"], push_subscribe=["maybe", None]
    )
    assert good["email_subscribe"].to_list() == ['"opted_in"', None]
    assert sorted(rejects["reason"].to_list()) == [
        "email_subscribe must be opted_in, subscribed or unsubscribed",
        "push_subscribe must be opted_in, subscribed or unsubscribed",
    ]


def test_country_must_be_iso_3166_alpha2():
    good, rejects = users(external_id=["u1", "u2"], country=["de", "XX"])
    assert good["country"].to_list() == ['"DE"', None]
    assert only_reason(rejects) == N.BAD_COUNTRY


def test_language_must_be_iso_639_1_and_a_region_suffix_is_dropped():
    good, rejects = users(external_id=["u1", "u2", "u3"], language=["FR", "en-US", "english"])
    assert good["language"].to_list() == ['"fr"', '"en"', None]
    assert only_reason(rejects) == N.BAD_LANGUAGE


def test_dob_is_sent_as_a_date_and_a_bad_dob_dropped():
    good, rejects = users(external_id=["u1", "u2"], dob=["1990-02-28", "1990-02-30"])
    assert good["dob"].to_list() == ['"1990-02-28"', None]
    assert rejects.select("value", "reason").rows() == [("1990-02-30", N.BAD_DOB)]


def test_dob_from_a_date_column():
    good, _ = users(external_id=["u1"], dob=[dt.date(1990, 2, 28)])
    assert good["dob"].to_list() == ['"1990-02-28"']


def test_phone_must_look_like_e164_and_loses_its_separators():
    good, rejects = users(external_id=["u1", "u2"], phone=["+49 (151) 123-4567", "12-34"])
    assert good["phone"].to_list() == ['"+491511234567"', None]
    assert rejects.select("value", "reason").rows() == [(None, N.BAD_PHONE)]


def test_string_longer_than_255_characters_is_dropped():
    good, rejects = users(external_id=["u1"], bio=["x" * 256], city=["y" * 255])
    assert good.select("bio", "_dropped").row(0) == (None, ["bio"])
    assert good["city"][0] == json.dumps("y" * 255)
    assert rejects.select("column", "value", "reason").rows() == [("bio", None, N.TOO_LONG)]


def test_nan_and_infinite_floats_are_dropped():
    good, rejects = users(external_id=["u1", "u2", "u3"], score=[float("nan"), float("inf"), 2.0])
    assert good["score"].to_list() == [None, None, "2.0"]
    assert rejects["reason"].to_list() == [N.NOT_FINITE, N.NOT_FINITE]


def test_reject_value_longer_than_100_characters_is_hidden():
    _, rejects = users(external_id=["u1"], gender=["x" * 101])
    assert rejects.select("value", "reason").rows() == [(None, N.BAD_GENDER)]


def test_attribute_name_starting_with_dollar_is_rejected_once_per_file_with_a_count():
    lf = pl.concat(
        [
            source("a.parquet", external_id=["u1", "u2"], **{"$score": [1, None]}),
            source("b.parquet", external_id=["u3"], **{"$score": [3]}),
        ]
    )
    good, rejects = run(N.normalize_users(lf))
    assert "$score" not in good.columns
    assert rejects.select("file", "column", "key", "row", "reason").rows() == [
        ("a.parquet", "$score", None, None, f"{N.DOLLAR_COLUMN} (1 non-empty cells in this file not sent)"),
        ("b.parquet", "$score", None, None, f"{N.DOLLAR_COLUMN} (1 non-empty cells in this file not sent)"),
    ]


def test_nested_object_key_with_a_dot_drops_that_users_attribute_only():
    # Polars gives both rows the field "a.b": only the row that holds it is Braze-invalid (issue 16).
    good, rejects = users(external_id=["u1", "u2"], prefs=[{"a.b": 1, "c": 2}, {"a.b": None, "c": 3}])
    assert good["prefs"].to_list() == [None, '{"c":3}'] and good["_dropped"].to_list() == [["prefs"], []]
    assert rejects.select("key", "column").rows() == [("u1", "prefs")]
    assert rejects["reason"][0].startswith(N.BAD_NESTED_KEY)


def test_nested_key_with_a_dot_inside_list_items_rejects_the_column():
    good, rejects = users(external_id=["u1"], pets=[[{"a.b": 1}]])
    assert "pets" not in good.columns
    assert rejects["reason"][0].startswith(N.BAD_NESTED_KEY)


def test_no_identifier_column_raises_naming_the_files():
    with pytest.raises(N.NormalizeError, match=r"users: no identifier column in users.csv: add external_id"):
        N.normalize_users(source(first_name=["Ann"]), files=["users.csv"])


def test_frame_without_origin_columns_raises():
    with pytest.raises(N.NormalizeError, match="no '_file' column"):
        N.normalize_users(pl.LazyFrame({"external_id": ["u1"]}))


# --- purchases -----------------------------------------------------------------------------------------


def test_purchase_object_has_its_keys_in_a_fixed_order():
    good, rejects = purchases(quantity=["2"], properties=['{"b": 1, "a": "x"}'])
    assert rejects.height == 0
    assert good.columns == [
        "purchase_id",
        "external_id",
        "_file",
        "_row",
        "object",
        "fingerprint",
        "data_points",
    ]
    assert good["object"][0] == (
        '{"external_id":"u1","product_id":"sku-1","currency":"USD","price":9.99,"quantity":2,'
        '"time":"2024-05-01T12:00:00.000Z","properties":{"a":"x","b":1}}'
    )
    assert good["data_points"][0] == 3


def test_absent_quantity_and_properties_are_not_sent():
    good, _ = purchases(quantity=[None], properties=[""])
    assert good["object"][0] == (
        '{"external_id":"u1","product_id":"sku-1","currency":"USD","price":9.99,"time":"2024-05-01T12:00:00.000Z"}'
    )
    assert good["data_points"][0] == 1


def test_fingerprint_is_xxh3_64_of_the_object():
    good, _ = purchases()
    expected = good.select(plh.col("object").nchash.xxh3_64())["object"][0]
    assert good.schema["fingerprint"] == pl.UInt64 and good["fingerprint"][0] == expected


def test_currency_is_upper_cased_and_must_be_iso_4217():
    good, rejects = purchases(purchase_id=["p1", "p2", "p3"], currency=["usd", "ABC", "HRK"])
    assert good["purchase_id"].to_list() == ["p1"]
    assert '"currency":"USD"' in good["object"][0]
    assert rejects.select("key", "value", "reason").rows() == [
        ("p2", "ABC", N.BAD_CURRENCY),
        ("p3", "HRK", N.BAD_CURRENCY),
    ]


def test_missing_currency_rejects_the_row():
    _, rejects = purchases(currency=[""])
    assert only_reason(rejects) == "missing currency"


def test_quantity_must_be_a_whole_number_from_1_to_100():
    good, rejects = purchases(
        purchase_id=["p0", "p1", "p100", "p101", "p1.5"], quantity=["0", "1", "100", "101", "1.5"]
    )
    assert good["purchase_id"].to_list() == ["p1", "p100"]
    assert rejects.select("key", "value").rows() == [("p0", "0"), ("p101", "101"), ("p1.5", "1.5")]
    assert set(rejects["reason"]) == {N.BAD_QUANTITY}


def test_price_must_be_a_non_negative_finite_number():
    _, rejects = purchases(purchase_id=["a", "b", "c", "d", "e"], price=["-1", "12,50", "NaN", "", "0"])
    assert rejects.select("key", "reason").rows() == [
        ("a", N.NEGATIVE_PRICE),
        ("b", N.BAD_PRICE),
        ("c", N.PRICE_NOT_FINITE),
        ("d", "missing price"),
    ]


def test_price_column_of_a_wrong_type_rejects_each_row():
    good, rejects = purchases(price=[True])
    assert good.height == 0 and only_reason(rejects) == N.BAD_PRICE


def test_missing_or_unparseable_time_rejects_the_row():
    _, rejects = purchases(purchase_id=["a", "b"], time=["", "yesterday"])
    assert rejects.select("key", "value", "reason").rows() == [
        ("a", None, "missing time"),
        ("b", "yesterday", N.BAD_TIME),
    ]


def test_times_are_sent_in_utc_with_milliseconds():
    aware = pl.Series([dt.datetime(2024, 5, 1, 14, tzinfo=UTC)]).dt.convert_time_zone("Asia/Tokyo")
    good, _ = purchases(purchase_id=["a", "b"], time=[dt.datetime(2024, 5, 1, 12), None])
    good_aware, _ = purchases(time=aware)
    good_text, _ = purchases(time=["2024-05-01T14:00:00+02:00"])
    assert '"time":"2024-05-01T12:00:00.000Z"' in good["object"][0]
    assert '"time":"2024-05-01T14:00:00.000Z"' in good_aware["object"][0]
    assert '"time":"2024-05-01T12:00:00.000Z"' in good_text["object"][0]


def test_duplicate_purchase_id_is_sent_once_the_first_in_file_order():
    good, rejects = purchases(purchase_id=["p1", "p1"], price=["1", "2"])
    assert good.select("_row").rows() == [(1,)]
    assert rejects.select("key", "row", "reason").rows() == [("p1", 2, "duplicate purchase_id; sent once")]


def test_a_rejected_first_row_does_not_hide_a_valid_repeat():
    good, rejects = purchases(purchase_id=["p1", "p1"], currency=["ABC", "EUR"])
    assert good["_row"].to_list() == [2]
    assert only_reason(rejects) == N.BAD_CURRENCY


def test_missing_purchase_id_rejects_the_row():
    _, rejects = purchases(purchase_id=[" "])
    assert rejects.select("key", "reason").rows() == [(None, "missing purchase_id")]


def test_purchase_without_external_id_is_rejected():
    _, rejects = purchases(external_id=[None])
    assert only_reason(rejects) == N.MISSING_IDENTIFIER


def test_product_id_longer_than_255_characters_is_rejected():
    _, rejects = purchases(product_id=["x" * 256])
    assert only_reason(rejects) == N.too_long("product_id")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("{oops", "properties is not valid JSON"),
        ("[1, 2]", "properties is not a JSON object"),
        (
            '{"price": 1}',
            "properties uses a reserved key (currency, event_name, price, product_id, quantity, time)",
        ),
        ('{"$source": "crm"}', "property name starts with '$'"),
        (json.dumps({"k" * 256: 1}), "property name longer than 255 characters"),
        (json.dumps({f"k{i}": i for i in range(257)}), "properties has more than 256 keys"),
    ],
)
def test_bad_properties_reject_the_row(text, reason):
    good, rejects = purchases(properties=[text])
    assert good.height == 0 and only_reason(rejects) == reason


def test_properties_with_256_keys_are_fine():
    good, _ = purchases(properties=[json.dumps({f"k{i:03d}": i for i in range(256)})])
    assert good["data_points"][0] == 257


def test_struct_properties_leave_out_null_keys_and_sort_keys():
    good, _ = purchases(purchase_id=["p1", "p2"], properties=[{"b": 1, "a": None}, {"b": None, "a": "x"}])
    assert [json.loads(o)["properties"] for o in good["object"]] == [{"b": 1}, {"a": "x"}]
    assert good["data_points"].to_list() == [2, 2]


def test_struct_properties_with_a_reserved_key_set_are_rejected():
    good, rejects = purchases(
        purchase_id=["p1", "p2"], properties=[{"price": None, "a": 1}, {"price": 3, "a": 1}]
    )
    assert good["purchase_id"].to_list() == ["p1"]
    assert rejects["reason"][0].startswith("properties uses a reserved key")


def test_missing_required_purchase_column_raises_naming_dataset_file_and_column():
    lf = source(purchase_id=["p1"], external_id=["u1"], product_id=["s"], price=[1.0], time=["2024-05-01"])
    with pytest.raises(N.NormalizeError, match=r"purchases: required column 'currency' is missing in p.csv"):
        N.normalize_purchases(lf, files=["p.csv"])


# --- events ----------------------------------------------------------------------------------------------


def test_event_object_has_its_keys_in_a_fixed_order():
    good, rejects = events(properties=[{"screen": "home"}])
    assert rejects.height == 0
    assert good["object"][0] == (
        '{"external_id":"u1","name":"app_open","time":"2024-05-01T12:00:00.000Z","properties":{"screen":"home"}}'
    )
    assert good["data_points"][0] == 2


def test_event_reserved_property_keys_reject_the_row():
    _, rejects = events(event_id=["a", "b"], properties=['{"time": 1}', '{"event_name": "x"}'])
    assert set(rejects["reason"]) == {"properties uses a reserved key (event_name, time)"}


def test_event_name_missing_or_too_long_rejects_the_row():
    _, rejects = events(event_id=["a", "b"], name=["", "n" * 256])
    assert rejects["reason"].to_list() == ["missing name", N.too_long("name")]


def test_duplicate_event_id_is_sent_once():
    good, rejects = events(event_id=["e1", "e1", "e2"])
    assert good["event_id"].to_list() == ["e1", "e2"]
    assert only_reason(rejects) == "duplicate event_id; sent once"


def test_event_id_stored_as_integer_becomes_text():
    good, _ = events(event_id=[42])
    assert good["event_id"].to_list() == ["42"]


# --- push tokens -----------------------------------------------------------------------------------------


def test_token_with_external_id_is_an_attributes_object():
    good, rejects = tokens()
    assert rejects.height == 0
    assert good.columns == [
        "external_id",
        "app_id",
        "token",
        "device_id",
        "platform",
        "_file",
        "_row",
        "object",
    ]
    assert good["object"][0] == (
        '{"external_id":"u1","push_tokens":[{"app_id":"app","token":"tok-1","device_id":"device-0001"}]}'
    )


def test_token_without_external_id_is_imported_anonymously():
    good, _ = tokens(external_id=[""], device_id=[None])
    assert good["external_id"].to_list() == [None]
    assert good["object"][0] == '{"push_token_import":true,"push_tokens":[{"app_id":"app","token":"tok-1"}]}'


def test_web_push_tokens_are_rejected():
    _, rejects = tokens(platform=["Web"])
    assert rejects.select("value", "reason").rows() == [("Web", N.WEB_TOKEN)]


def test_unknown_platform_is_rejected():
    _, rejects = tokens(platform=["blackberry"])
    assert only_reason(rejects) == N.BAD_PLATFORM


def test_device_id_outside_8_to_255_bytes_is_dropped_and_the_token_loads():
    good, rejects = tokens(token=["t1", "t2"], device_id=["abc", "d" * 256])
    assert good["device_id"].to_list() == [None, None]
    assert '"device_id"' not in good["object"][0]
    assert rejects.select("column", "value", "reason").rows() == [
        ("device_id", "abc", N.BAD_DEVICE_ID),
        ("device_id", None, N.BAD_DEVICE_ID),
    ]


def test_missing_app_id_or_token_rejects_the_row():
    _, rejects = tokens(app_id=[None, "app"], token=["t1", ""])
    assert rejects["reason"].to_list() == ["missing app_id", "missing token"]


def test_duplicate_app_id_and_token_keeps_the_last_row():
    good, rejects = tokens(external_id=["u1", "u2"])
    assert good.select("external_id", "_row").rows() == [("u2", 2)]
    assert rejects.select("row", "reason").rows() == [(1, N.DUPLICATE_TOKEN)]


def test_a_token_never_appears_in_rejects():
    _, rejects = tokens(external_id=["u1", "u2", "u3"], platform=["web", "ios", "ios"])
    assert rejects["key"].to_list() == ["app_id=app row 1", "app_id=app row 2"]
    assert "tok-1" not in str(rejects.rows())


def test_tokens_are_sorted_by_app_id_and_token():
    good, _ = tokens(app_id=["b", "a", "a"], token=["t1", "t2", "t1"])
    assert good.select("app_id", "token").rows() == [("a", "t1"), ("a", "t2"), ("b", "t1")]


def test_missing_token_column_raises():
    with pytest.raises(N.NormalizeError, match="push_tokens: required column 'token' is missing"):
        N.normalize_push_tokens(source(external_id=["u1"], app_id=["a"]))
