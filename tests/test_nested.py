"""Nested values sent as in the export; _merge_objects patches; arrays of objects by item id; subscription
groups (transforms/jsontext.py compact_json, transforms/nested.py, transforms/deltas.py diff_users)."""

from __future__ import annotations

import io
import json

import polars as pl

from connectors.state.snapshot import SCHEMAS
from transforms.deltas import diff_users
from transforms.normalize import normalize_events, normalize_users

EMPTY_HELD = pl.LazyFrame(schema=SCHEMAS["held"])


def ndjson(rows: list[dict]) -> pl.LazyFrame:
    text = "\n".join(json.dumps(r) for r in rows).encode()
    return pl.read_ndjson(io.BytesIO(text)).with_columns(
        _file=pl.lit("users.ndjson"), _row=pl.int_range(1, pl.len() + 1, dtype=pl.Int64)).lazy()


def good(lf: pl.LazyFrame) -> pl.DataFrame:
    return normalize_users(lf).good.collect()


def night(users: pl.DataFrame, snapshot: pl.DataFrame | None = None):
    snap = snapshot.lazy() if snapshot is not None else pl.LazyFrame(schema=SCHEMAS["users"])
    d = diff_users(users.lazy(), snap, EMPTY_HELD)
    send = d.send.collect()
    return ({r["key"]: (json.loads(r["object"]), r["data_points"]) for r in send.iter_rows(named=True)},
            d.next_rows.collect())


def test_struct_fields_unified_by_polars_are_not_sent_as_null_keys():
    lf = ndjson([{"external_id": "a", "book": {"a": 2}},
                 {"external_id": "b", "book": {"a": 1, "b": {"c": 2}}}])
    sent, _ = night(good(lf))
    assert sent["a"][0]["book"] == {"a": 2}
    assert sent["b"][0]["book"] == {"a": 1, "b": {"c": 2}}
    assert sent["b"][1] == 2  # one data point per key holding a value: a and b.c (b counts through its keys)


def test_event_properties_keep_only_the_keys_of_their_row():
    rows = [{"event_id": "e1", "external_id": "a", "name": "x", "time": "2026-01-01T00:00:00Z",
             "properties": {"k": {"a": 1}}},
            {"event_id": "e2", "external_id": "a", "name": "x", "time": "2026-01-01T00:00:00Z",
             "properties": {"k": {"b": [{"c": 1}, {"d": 2}]}}}]
    objs = normalize_events(ndjson(rows)).good.collect()["object"].to_list()
    assert [json.loads(o)["properties"] for o in objs] == [{"k": {"a": 1}}, {"k": {"b": [{"c": 1}, {"d": 2}]}}]


def test_nested_object_partial_change_sends_only_changed_keys_with_merge_objects():
    n1 = good(ndjson([{"external_id": "a", "book": {"title": "Dune", "meta": {"year": 1965, "pages": 412}}}]))
    _, snap = night(n1)
    n2 = good(ndjson([{"external_id": "a", "book": {"title": "Dune", "meta": {"year": 1966, "pages": 412}}}]))
    sent, _ = night(n2, snap)
    obj, points = sent["a"]
    assert obj == {"external_id": "a", "book": {"meta": {"year": 1966}}, "_merge_objects": True}
    assert points == 1


def test_nested_object_that_lost_a_key_is_sent_whole_without_merge():
    _, snap = night(good(ndjson([{"external_id": "a", "book": {"title": "Dune", "isbn": "x"}}])))
    sent, _ = night(good(ndjson([{"external_id": "a", "book": {"title": "Dune"}}])), snap)
    assert sent["a"][0] == {"external_id": "a", "book": {"title": "Dune"}}


def pets(n: int, changed: dict | None = None, drop: int | None = None, add: int | None = None) -> list[dict]:
    items = [{"id": i, "name": f"pet{i}", "kind": "dog"} for i in range(n)]
    for i, name in (changed or {}).items():
        items[i]["name"] = name
    if drop is not None:
        items = [p for p in items if p["id"] != drop]
    if add is not None:
        items.append({"id": add, "name": "new", "kind": "cat"})
    return items


def test_array_of_objects_first_load_whole_then_one_operation_per_changed_item():
    _, snap = night(good(ndjson([{"external_id": "a", "pets[id]": pets(20)}])))
    assert json.loads(snap["pets[id]"][0]) == pets(20)

    sent, snap2 = night(good(ndjson([{"external_id": "a", "pets[id]": pets(20, changed={7: "Rex"})}])), snap)
    assert sent["a"] == ({"external_id": "a", "pets": {"$update": [
        {"$identifier_key": "id", "$identifier_value": 7, "$new_object": {"name": "Rex"}}]},
        "_merge_objects": True}, 1)

    sent, snap3 = night(good(ndjson([{"external_id": "a", "pets[id]": pets(20, changed={7: "Rex"}, drop=3)}])), snap2)
    assert sent["a"][0]["pets"] == {"$remove": [{"$identifier_key": "id", "$identifier_value": 3}]}

    sent, _ = night(good(ndjson([{"external_id": "a", "pets[id]": pets(20, changed={7: "Rex"}, drop=3, add=40)}])),
                    snap3)
    assert sent["a"] == ({"external_id": "a", "pets": {"$add": [{"id": 40, "name": "new", "kind": "cat"}]}}, 3)


def test_an_item_that_lost_a_key_is_removed_by_a_value_only_it_holds_and_added_again():
    """Braze applies Add, then Remove: the old item is removed by the key it loses (a value no other item
    holds), so the re-added item survives; billed 1 removal + its 2 values."""
    items = [{"id": 1, "name": "Luna", "age": 16}, {"id": 2, "name": "Rex", "age": 3}]
    _, snap = night(good(ndjson([{"external_id": "a", "pets[id]": items}])))
    sent, _ = night(good(ndjson([{"external_id": "a", "pets[id]": [{"id": 1, "name": "Luna"}, items[1]]}])), snap)
    assert sent["a"] == ({"external_id": "a", "pets": {"$add": [{"id": 1, "name": "Luna"}],
                                                      "$remove": [{"$identifier_key": "age", "$identifier_value": 16}]}},
                         3)


def test_an_item_that_lost_a_key_without_a_value_only_it_holds_sends_the_whole_array():
    """No key tells the old item from the others after the Add: the whole array is sent (billed per value)."""
    items = [{"id": 1, "kind": "dog", "vet": {"city": "Oslo"}}, {"id": 2, "kind": "dog"}]
    _, snap = night(good(ndjson([{"external_id": "a", "pets[id]": items}])))
    new = [{"id": 1, "kind": "dog", "vet": {}}, items[1]]
    sent, _ = night(good(ndjson([{"external_id": "a", "pets[id]": new, "book": {"t": 1}}])), snap)
    assert sent["a"][0]["pets"] == [{"id": 1, "kind": "dog", "vet": {}}, {"id": 2, "kind": "dog"}]
    assert sent["a"][1] == 5 + 1


def test_an_update_next_to_an_object_replaced_whole_sends_the_whole_array():
    """One `_merge_objects` flag per attributes object: a nested object that lost a key needs it off, and an
    `$update` without it would overwrite the item, so the array goes whole."""
    _, snap = night(good(ndjson([{"external_id": "a", "pets[id]": pets(2), "book": {"t": 1, "isbn": "x"}}])))
    sent, _ = night(good(ndjson([{"external_id": "a", "pets[id]": pets(2, changed={1: "Rex"}), "book": {"t": 1}}])),
                    snap)
    assert sent["a"] == ({"external_id": "a", "pets": pets(2, changed={1: "Rex"}),
                          "book": {"t": 1}}, 6 + 1)


def test_array_of_objects_without_unique_ids_is_rejected_as_a_cell():
    norm = normalize_users(ndjson([{"external_id": "a", "city": "Oslo", "pets[id]": [{"id": 1}, {"id": 1}]}]))
    g, rej = pl.collect_all([norm.good, norm.rejects])
    assert g["pets[id]"].to_list() == [None] and g["city"].to_list() == ['"Oslo"']
    assert rej["column"].to_list() == ["pets[id]"] and "unique 'id'" in rej["reason"][0]


def test_array_of_objects_as_json_text_in_csv():
    lf = pl.LazyFrame({"external_id": ["a"], "pets[id]": ['[{"id": "x", "n": null, "k": 1}]'],
                       "_file": ["u.csv"], "_row": [1]})
    assert json.loads(good(lf)["pets[id]"][0]) == [{"id": "x", "k": 1}]


def test_subscription_groups_validated_set_and_changed_per_group():
    rows = [{"external_id": "a", "subscription_groups": [{"id": "g2", "state": "Subscribed"},
                                                         {"id": "g1", "state": "unsubscribed"}]},
            {"external_id": "b", "subscription_groups": [{"id": "g1", "state": "maybe"}]}]
    norm = normalize_users(ndjson(rows))
    g, rej = pl.collect_all([norm.good, norm.rejects])
    assert rej["key"].to_list() == ["b"] and rej["column"].to_list() == ["subscription_groups"]
    sent, snap = night(g)
    assert sent["a"] == ({"external_id": "a", "subscription_groups": [
        {"subscription_group_id": "g1", "subscription_state": "unsubscribed"},
        {"subscription_group_id": "g2", "subscription_state": "subscribed"}]}, 0)
    rows[0]["subscription_groups"][1]["state"] = "subscribed"
    sent, _ = night(good(ndjson(rows[:1])), snap)
    assert sent["a"][0]["subscription_groups"] == [{"subscription_group_id": "g1", "subscription_state": "subscribed"}]


def test_mapping_declares_an_array_of_objects_by_its_key(tmp_path):
    from connectors.mapping import apply_mapping, load_mapping

    (tmp_path / "m.yaml").write_text("datasets:\n  users:\n    columns: {external_id: CID}\n"
                                     "    arrays_of_objects: {pets: id}\n")
    spec = load_mapping(tmp_path / "m.yaml").model.datasets["users"]
    lf = pl.LazyFrame({"CID": ["a"], "pets": [[{"id": 1}]], "_file": ["u.parquet"], "_row": [1]})
    assert apply_mapping(spec, lf).collect_schema().names() == ["external_id", "pets[id]", "_file", "_row"]


def test_an_empty_subscription_groups_cell_sends_nothing():
    _, snap = night(good(ndjson([{"external_id": "a", "subscription_groups": [{"id": "g", "state": "subscribed"}]}])))
    sent, _ = night(good(ndjson([{"external_id": "a", "subscription_groups": None, "city": "Oslo"}])), snap)
    assert sent["a"][0] == {"external_id": "a", "city": "Oslo"}


def test_mapping_names_an_array_of_objects_that_is_not_there(tmp_path):
    from connectors.mapping import MappingError, check_columns, load_mapping

    (tmp_path / "m.yaml").write_text("datasets:\n  users:\n    arrays_of_objects: {petz: id}\n")
    m = load_mapping(tmp_path / "m.yaml")
    problems = check_columns(m, "users", pl.Schema({"external_id": pl.String, "pets": pl.String}), "u.csv")
    assert "column 'petz' is not in the export of users" in str(m.error(problems))
    assert isinstance(m.error(problems), MappingError)


def test_the_cost_read_from_json_text_equals_the_cost_of_the_value():
    """deltas._object_points (regexes over the JSON text, used on first loads) and nested.key_count (the parsed
    value) bill the same: keys holding objects count through their keys, dates are one value, `{}` and `[]`
    are values, escaped quotes never make a key."""
    from transforms.deltas import _object_points
    from transforms.nested import key_count

    values = [
        {"song_name": "Solea", "artist_name": "Miles Davis", "album_name": "Sketches of Spain", "year_released": 1960,
         "genre": "Jazz", "play_analytics": {"count": 1000, "top_10_listeners": True}},
        {"a": {"b": {"c": 1, "d": {"$time": "2020-01-01"}}}, "e": {}, "f": [], "g": ["x", "y"]},
        {"k": "va\"l\": {\"x\": 1}", "pets": [{"id": 1, "vet": {"city": "Oslo"}}, {"id": 2}]},
        [{"id": 1, "type": "dog", "breed": "beagle", "name": "Gus"}, {"id": 2, "when": {"$time": "2020-05-28"}}],
        {},
    ]
    texts = pl.Series("v", [json.dumps(v) for v in values])
    got = pl.DataFrame({"v": texts}).select(_object_points(pl.col("v")))["v"].to_list()
    assert got == [max(1, key_count(v)) for v in values] == [7, 5, 4, 6, 1]
