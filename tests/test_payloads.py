"""Packing objects into request batches (transforms/payloads.py)."""

import json

import polars as pl

from transforms.payloads import pack, pack_unit


def objects(spec):
    """spec: list of (external_id, array, n)."""
    rows = []
    for uid, array, n in spec:
        for i in range(n):
            ds = {"attributes": "users", "events": "events", "purchases": "purchases"}[array]
            rows.append({"dataset": ds, "array": array, "key": f"{uid}-{array}-{i:03d}", "external_id": uid,
                         "object": json.dumps({"external_id": uid, "k": i}), "fingerprint": i, "data_points": 1,
                         "_file": "f", "_row": i})
    return pl.LazyFrame(rows, schema={"dataset": pl.Utf8, "array": pl.Utf8, "key": pl.Utf8, "external_id": pl.Utf8,
                                      "object": pl.Utf8, "fingerprint": pl.UInt64, "data_points": pl.Int64,
                                      "_file": pl.Utf8, "_row": pl.Int64})


def test_combined_limit_never_exceeded_and_every_object_placed_once():
    spec = [(f"u{i:03d}", "attributes", 1) for i in range(200)] + [(f"u{i:03d}", "events", i % 4) for i in range(200)]
    batches, placed = pack(objects(spec), batch_size=75)
    for body in batches["body"]:
        b = json.loads(body)
        assert sum(len(v) for v in b.values()) <= 75
    assert placed.height == 200 + sum(i % 4 for i in range(200))
    assert placed.select("batch_no", "array", "index").unique().height == placed.height


def test_requests_are_packed_full_whatever_the_shape():
    """Every request but the last is full: ceil(objects / batch size) requests, in both modes."""
    spec = [(f"u{i:03d}", "attributes", 1) for i in range(100)] + [(f"u{i:03d}", "purchases", 3) for i in range(100)]
    batches, _ = pack(objects(spec), batch_size=75)
    assert batches.height == -(-400 // 75)
    per_array, _ = pack(objects(spec), batch_size=75, mode="per_array")
    assert per_array.height <= batches.height


def test_the_open_batch_is_carried_into_the_next_unit():
    """Two units packed one after the other: the first unit's part-empty batch is filled by the second, and
    the carried objects keep their batch and position."""
    first = pack_unit(objects([(f"a{i:03d}", "attributes", 1) for i in range(100)]), batch_size=75, final=False)
    assert first.batches.height == 1 and first.tail.height == 25
    second = pack_unit(objects([(f"b{i:03d}", "events", 2) for i in range(40)]), batch_size=75,
                       tail=first.tail, final=True)
    assert second.batches["batch_no"].to_list() == [1, 2]
    body = json.loads(second.batches["body"][0])
    assert len(body["attributes"]) == 25 and len(body["events"]) == 50
    carried = first.placed.filter(pl.col("batch_no") == 1)
    assert carried["index"].to_list() == list(range(25))
    for row in carried.iter_rows(named=True):
        assert body["attributes"][row["index"]]["external_id"] == row["external_id"]


def test_user_larger_than_a_batch_is_split():
    _, placed = pack(objects([("big", "events", 200)]), batch_size=75)
    assert placed["batch_no"].n_unique() == 3


def test_per_array_mode_allows_75_per_array():
    """75 attributes and 75 events fit one request when the limit counts each array (legacy contracts), and
    take two when it counts all arrays together: the case fails if per_array packs like combined."""
    spec = [(f"u{i:03d}", "attributes", 1) for i in range(75)] + [(f"u{i:03d}", "events", 1) for i in range(75)]
    per_array, placed = pack(objects(spec), batch_size=75, mode="per_array")
    assert per_array.height == 1
    body = json.loads(per_array["body"][0])
    assert (len(body["attributes"]), len(body["events"])) == (75, 75)
    assert placed.height == 150
    combined, _ = pack(objects(spec), batch_size=75)
    assert combined.height == 2
    assert all(sum(len(v) for v in json.loads(b).values()) <= 75 for b in combined["body"])


def test_per_array_mode_still_caps_each_array():
    spec = [(f"u{i:03d}", "attributes", 1) for i in range(160)] + [(f"u{i:03d}", "events", 1) for i in range(10)]
    per_array, placed = pack(objects(spec), batch_size=75, mode="per_array")
    assert per_array.height == 3 and placed.height == 170
    for body in per_array["body"]:
        assert all(len(v) <= 75 for v in json.loads(body).values())


def test_index_is_position_in_array_as_sent():
    batches, placed = pack(objects([("u1", "attributes", 1), ("u1", "events", 3), ("u2", "attributes", 1)]),
                           batch_size=75)
    body = json.loads(batches["body"][0])
    for row in placed.iter_rows(named=True):
        sent = body[row["array"]][row["index"]]
        assert sent["external_id"] == row["external_id"]


def test_batches_are_deterministic():
    spec = [(f"u{i:03d}", "attributes", 1) for i in range(300)]
    a, _ = pack(objects(spec), batch_size=50)
    b, _ = pack(objects(list(reversed(spec))), batch_size=50)
    assert a["body"].to_list() == b["body"].to_list()
