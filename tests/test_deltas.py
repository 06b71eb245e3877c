"""Column-level deltas against the acknowledged snapshot (transforms/deltas.py)."""

import json

import polars as pl

from connectors.state.snapshot import SCHEMAS
from transforms.deltas import diff_occurrences, diff_push_tokens, diff_users, json_text

EMPTY_HELD = pl.LazyFrame(schema=SCHEMAS["held"])


def users(rows, cols=("city", "tier", "email_subscribe")):
    schema = {"external_id": pl.Utf8, "_file": pl.Utf8, "_row": pl.Int64, "_dropped": pl.List(pl.Utf8),
              **{c: pl.Utf8 for c in cols}}
    data = [{"_file": "users.csv", "_row": i + 1, "_dropped": r.pop("_dropped", []), **r} for i, r in enumerate(rows)]
    return pl.LazyFrame(data, schema=schema)


def snapshot(rows, cols=("city", "tier")):
    return pl.LazyFrame(rows, schema={"external_id": pl.Utf8, **{c: pl.Utf8 for c in cols}})


def sent(delta):
    return {r["key"]: json.loads(r["object"]) for r in delta.send.collect().iter_rows(named=True)}


def test_new_user_sends_all_non_empty_values():
    d = diff_users(users([{"external_id": "u1", "city": '"Oslo"', "tier": None}]), snapshot([]), EMPTY_HELD)
    assert sent(d) == {"u1": {"external_id": "u1", "city": "Oslo"}}


def test_unchanged_value_is_not_sent_and_user_counted_unchanged():
    d = diff_users(users([{"external_id": "u1", "city": '"Oslo"', "tier": "2"}]),
                   snapshot([{"external_id": "u1", "city": '"Oslo"', "tier": "2"}]), EMPTY_HELD)
    assert sent(d) == {}
    assert d.kept.collect()["bucket"].to_list() == ["unchanged"]


def test_changed_value_only_is_sent():
    d = diff_users(users([{"external_id": "u1", "city": '"Bergen"', "tier": "2"}]),
                   snapshot([{"external_id": "u1", "city": '"Oslo"', "tier": "2"}]), EMPTY_HELD)
    assert sent(d) == {"u1": {"external_id": "u1", "city": "Bergen"}}


def test_value_that_became_empty_is_sent_as_null():
    d = diff_users(users([{"external_id": "u1", "city": None, "tier": "2"}]),
                   snapshot([{"external_id": "u1", "city": '"Oslo"', "tier": "2"}]), EMPTY_HELD)
    assert sent(d) == {"u1": {"external_id": "u1", "city": None}}


def test_dropped_invalid_cell_keeps_acknowledged_value():
    d = diff_users(users([{"external_id": "u1", "city": None, "tier": "3", "_dropped": ["city"]}]),
                   snapshot([{"external_id": "u1", "city": '"Oslo"', "tier": "2"}]), EMPTY_HELD)
    assert sent(d) == {"u1": {"external_id": "u1", "tier": 3}}
    nxt = d.next_rows.collect().row(0, named=True)
    assert nxt["city"] == '"Oslo"' and nxt["tier"] == "3"


def test_column_absent_tonight_is_left_alone_and_kept_in_next_rows():
    d = diff_users(users([{"external_id": "u1", "tier": "3"}], cols=("tier",)),
                   snapshot([{"external_id": "u1", "city": '"Oslo"', "tier": "2"}]), EMPTY_HELD)
    assert sent(d) == {"u1": {"external_id": "u1", "tier": 3}}
    assert d.next_rows.collect().row(0, named=True)["city"] == '"Oslo"'


def test_data_points_exclude_subscription_states():
    d = diff_users(users([{"external_id": "u1", "city": '"Oslo"', "tier": "1", "email_subscribe": '"opted_in"'}]),
                   snapshot([]), EMPTY_HELD)
    assert d.send.collect()["data_points"].to_list() == [2]


def test_object_braze_rejected_before_is_not_resent_until_it_changes():
    first = diff_users(users([{"external_id": "u1", "city": '"Oslo"'}]), snapshot([]), EMPTY_HELD).send.collect()
    held = pl.LazyFrame([{"dataset": "users", "key": "u1", "fingerprint": first["fingerprint"][0],
                          "status": "rejected", "reason": "EMAIL_BAD_FORMAT", "run_id": "r"}], schema=SCHEMAS["held"])
    again = diff_users(users([{"external_id": "u1", "city": '"Oslo"'}]), snapshot([]), held)
    assert sent(again) == {}
    assert again.kept.collect()["bucket"].to_list() == ["rejected"]
    changed = diff_users(users([{"external_id": "u1", "city": '"Rome"'}]), snapshot([]), held)
    assert list(sent(changed)) == ["u1"]


def test_external_id_is_json_escaped():
    d = diff_users(users([{"external_id": 'a"b', "city": '"x"'}]), snapshot([]), EMPTY_HELD)
    assert sent(d) == {'a"b': {"external_id": 'a"b', "city": "x"}}


def occurrences(rows):
    return pl.LazyFrame(
        [{"external_id": "u1", "object": "{}", "data_points": 1, "_file": "p.csv", "_row": i + 1, **r}
         for i, r in enumerate(rows)],
        schema={"purchase_id": pl.Utf8, "external_id": pl.Utf8, "object": pl.Utf8, "fingerprint": pl.UInt64,
                "data_points": pl.Int64, "_file": pl.Utf8, "_row": pl.Int64},
    )


def test_only_never_acknowledged_purchase_ids_are_sent():
    acked = pl.LazyFrame({"key": ["p1"], "fingerprint": [11]}, schema=SCHEMAS["purchases"])
    d = diff_occurrences(occurrences([{"purchase_id": "p1", "fingerprint": 11}, {"purchase_id": "p2", "fingerprint": 12}]),
                         acked, EMPTY_HELD, dataset="purchases")
    assert d.send.collect()["key"].to_list() == ["p2"]
    assert d.kept.collect()["bucket"].to_list() == ["unchanged"]


def test_acknowledged_purchase_whose_row_changed_is_reported_not_resent():
    acked = pl.LazyFrame({"key": ["p1"], "fingerprint": [11]}, schema=SCHEMAS["purchases"])
    d = diff_occurrences(occurrences([{"purchase_id": "p1", "fingerprint": 99}]), acked, EMPTY_HELD, dataset="purchases")
    assert d.send.collect().height == 0
    kept = d.kept.collect().row(0, named=True)
    assert kept["bucket"] == "rejected" and "cannot edit" in kept["reason"]


def test_in_doubt_purchase_stays_pending():
    held = pl.LazyFrame([{"dataset": "purchases", "key": "p1", "fingerprint": 11, "status": "in_doubt",
                          "reason": "x", "run_id": "r"}], schema=SCHEMAS["held"])
    d = diff_occurrences(occurrences([{"purchase_id": "p1", "fingerprint": 11}]),
                         pl.LazyFrame(schema=SCHEMAS["purchases"]), held, dataset="purchases")
    assert d.send.collect().height == 0
    assert d.kept.collect()["bucket"].to_list() == ["pending"]


def tokens(rows):
    return pl.LazyFrame(
        [{"device_id": None, "platform": "ios", "_file": "t.csv", "_row": i + 1, "object": f'{{"i":{i}}}', **r}
         for i, r in enumerate(rows)],
        schema={"external_id": pl.Utf8, "app_id": pl.Utf8, "token": pl.Utf8, "device_id": pl.Utf8,
                "platform": pl.Utf8, "_file": pl.Utf8, "_row": pl.Int64, "object": pl.Utf8},
    )


def test_new_token_sent_known_token_left_alone_moved_token_sent_for_new_user():
    first = diff_push_tokens(tokens([{"external_id": "u1", "app_id": "a", "token": "T1"},
                                     {"external_id": None, "app_id": "a", "token": "T2"}]),
                             pl.LazyFrame(schema=SCHEMAS["push_tokens"]), EMPTY_HELD).send.collect()
    assert first.height == 2 and "T1" not in "".join(first["key"].to_list())
    acked = first.select("key", "external_id").lazy()
    d = diff_push_tokens(tokens([{"external_id": "u2", "app_id": "a", "token": "T1"},
                                 {"external_id": None, "app_id": "a", "token": "T2"},
                                 {"external_id": "u3", "app_id": "a", "token": "T3"}]), acked, EMPTY_HELD)
    assert sorted(d.send.collect()["external_id"].to_list()) == ["u2", "u3"]
    assert d.kept.collect()["bucket"].to_list() == ["unchanged"]


def test_json_text_encodes_strings_numbers_and_null():
    df = pl.DataFrame({"s": ['a"b', None], "n": [1, 2]})
    assert df.select(json_text(pl.col("s"))).to_series().to_list() == ['"a\\"b"', "null"]
    assert df.select(json_text(pl.col("n"))).to_series().to_list() == ["1", "2"]


def _normalized_sample_users() -> list[pl.DataFrame]:
    """Normalized users of every shipped sample: profile fields, lists, nested objects (struct and JSON text),
    arrays of objects by id, subscription groups, hostile keys."""
    from pathlib import Path

    from connectors.sources import scan_folder
    from transforms.normalize import normalize_users

    samples = Path(__file__).resolve().parents[1] / "data" / "samples"
    out = []
    for folder in (samples / "day1", samples / "day2", samples / "user_model" / "night1",
                   samples / "user_model" / "night2"):
        users = scan_folder(folder)["users"]
        out.append(normalize_users(users.frame).good.collect())
    return out


def test_a_first_load_computes_the_same_objects_and_costs_without_the_change_machinery():
    """With an empty snapshot, `snapshot_empty=True` sends every object whole and counts nested keys in Polars:
    the same objects, data points, kept rows and next snapshot rows as the general diff."""
    empty_snapshot = pl.LazyFrame(schema=SCHEMAS["users"])
    for good in _normalized_sample_users():
        general = diff_users(good.lazy(), empty_snapshot, EMPTY_HELD)
        fast = diff_users(good.lazy(), empty_snapshot, EMPTY_HELD, snapshot_empty=True)
        for a, b in ((general.send, fast.send), (general.kept, fast.kept), (general.next_rows, fast.next_rows)):
            assert a.collect().sort("external_id" if "external_id" in a.collect_schema() else "key").equals(
                b.collect().sort("external_id" if "external_id" in b.collect_schema() else "key"))
        assert general.send.collect()["data_points"].sum() > 0
