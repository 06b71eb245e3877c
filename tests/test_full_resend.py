"""The full-resend figure (what sending tonight's export whole would cost) against what the delta sends, over
every shape of user attribute: plain values, values that became empty, nested objects (dates, nested objects,
lists of objects inside), arrays of objects by item id (ids of either type, items added, removed, changed, a
key lost), subscription groups (not billable: 0 in both); events and purchases with properties (one each plus
their properties, in both). Per user and per night, the delta never costs more than the full resend, and a first
load costs exactly the full resend (transforms/deltas.py `resend_points`, braze_migrate/plan/planner.py). Push
tokens cost no data point on either side (deltas.diff_push_tokens, the planner's token units).

Issue #21 case 8 saw "a full resend would cost 4 data points" beside thousands sent. Two causes, both here:
an array of objects whose item ids all changed (every id retyped, or replaced) was sent as `$remove` of each old
id plus `$add` of each new item, which costs more than the whole array; and a value that became empty is
written as `null` (one data point) while the estimate counted only non-empty values."""

from __future__ import annotations

import io
import json

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.state.snapshot import SCHEMAS
from tests.nights import env, run, write_night
from transforms import deltas
from transforms.nested import KEYED_ARRAY
from transforms.normalize import normalize_users

EMPTY_HELD = pl.LazyFrame(schema=SCHEMAS["held"])


def _read(rows: list[dict]) -> pl.LazyFrame:
    """NDJSON as connectors/sources.py reads it (arrays of objects by id as their JSON text)."""
    text = "\n".join(json.dumps(r) for r in rows).encode()
    frame = pl.read_ndjson(io.BytesIO(text), infer_schema_length=None)
    keyed = {c: pl.String for c, t in frame.schema.items() if KEYED_ARRAY.match(c) and t.is_nested()}
    if keyed:
        frame = pl.read_ndjson(io.BytesIO(text), infer_schema_length=None, schema_overrides=keyed)
    return frame.with_columns(_file=pl.lit("users.ndjson"), _row=pl.int_range(1, pl.len() + 1, dtype=pl.Int64)).lazy()


def _night(rows: list[dict], snapshot: pl.DataFrame | None) -> tuple[dict, dict, pl.DataFrame]:
    """(data points sent per user, the full resend's per user, the next snapshot), as the planner computes them."""
    good = normalize_users(_read(rows)).good.collect()
    before = snapshot if snapshot is not None else pl.DataFrame(schema=SCHEMAS["users"])
    d = deltas.diff_users(good.lazy(), before.lazy(), EMPTY_HELD, snapshot_empty=before.height == 0, eager=True)
    send = d.send.collect()
    full = deltas.resend_points(good.lazy(), d).collect()
    nxt = d.next_rows.collect()
    if snapshot is not None and snapshot.height:  # acknowledged: the snapshot keeps the users not sent
        nxt = pl.concat([snapshot.join(nxt.select("external_id"), on="external_id", how="anti"), nxt],
                        how="diagonal_relaxed")
    return (dict(zip(send["external_id"], send["data_points"], strict=True)),
            dict(zip(full["external_id"], full["data_points"], strict=True)), nxt)


_TIME = {"$time": "2026-01-01T00:00:00Z"}
_profile = st.fixed_dictionaries({}, optional={
    "a": st.none() | st.integers(0, 3),
    "b": st.none() | st.sampled_from(["x", "y", ""]),
    "c": st.none() | st.fixed_dictionaries({}, optional={"x": st.integers(0, 2), "y": st.sampled_from(["p", "q"])}),
    "d": st.none() | st.lists(st.fixed_dictionaries({"k": st.integers(0, 2)}), max_size=2),
    "t": st.none() | st.just(_TIME),
})
_item = st.fixed_dictionaries({"id": st.sampled_from([1, 2, 3, "1", "2", "x"])},
                              optional={"kind": st.sampled_from(["cat", "dog"]), "age": st.integers(0, 2)})
_pets = st.lists(_item, max_size=3, unique_by=lambda i: i["id"])
_groups = st.lists(st.fixed_dictionaries({"id": st.sampled_from(["g1", "g2"]),
                                          "state": st.sampled_from(["subscribed", "unsubscribed"])}),
                   max_size=2, unique_by=lambda g: g["id"])
_user = st.fixed_dictionaries({}, optional={
    "tier": st.none() | st.sampled_from(["gold", "silver"]) | st.integers(0, 2),
    "profile": st.none() | _profile,
    "pets[id]": st.none() | _pets,
    "subscription_groups": _groups,
})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(_user, _user), min_size=1, max_size=6))
def test_the_delta_never_costs_more_than_the_full_resend(pairs):
    first = [{"external_id": f"u{i}", **a} for i, (a, _) in enumerate(pairs)]
    second = [{"external_id": f"u{i}", **b} for i, (_, b) in enumerate(pairs)]
    sent, full, snapshot = _night(first, None)
    assert sent == {u: p for u, p in full.items() if u in sent}  # a first load sends everything whole
    assert sum(sent.values()) == sum(full.values())
    sent, full, _ = _night(second, snapshot)
    over = {u: (p, full.get(u, 0)) for u, p in sent.items() if p > full.get(u, 0)}
    assert not over, f"sent more than a full resend (sent, full): {over}"


def test_an_array_whose_item_ids_all_changed_is_sent_whole():
    """Every id retyped (1 -> "1", the shape of #21 case 8) or replaced: `$remove` of each old id plus `$add` of
    each new item would cost 6, the whole array 4; the whole array is sent, and the profile equals the export."""
    old = [{"external_id": "u", "pets[id]": [{"id": 1, "kind": "cat"}, {"id": 2, "kind": "dog"}]}]
    _, _, snapshot = _night(old, None)
    for new_ids in (["1", "2"], [3, 4]):
        new = [{"external_id": "u", "pets[id]": [{"id": new_ids[0], "kind": "cat"}, {"id": new_ids[1], "kind": "dog"}]}]
        sent, full, _ = _night(new, snapshot)
        assert sent == {"u": 4} and full == {"u": 4}


def test_a_value_that_became_empty_counts_in_the_full_resend():
    """Writing `null` costs one data point (docs/braze-fidelity.md): a full resend that reaches the same profile
    writes it too."""
    _, _, snapshot = _night([{"external_id": "u", "tier": "gold", "city": "Oslo"}], None)
    sent, full, _ = _night([{"external_id": "u", "tier": None, "city": "Oslo"}], snapshot)
    assert sent == {"u": 1} and full == {"u": 2}


def test_a_sync_that_replaces_every_item_costs_no_more_than_a_full_resend(sandbox, tmp_path):
    """Through the CLI and the sandbox: the summary's figures (#21 case 8: "a full resend would cost 4 data
    points when 4,013 were sent")."""
    users = {f"u{i}": {"tier": "gold", "pets[id]": [{"id": 1, "kind": "cat"}, {"id": 2, "kind": "dog"}]}
             for i in range(40)}
    e, state = env(sandbox, tmp_path), tmp_path / "state"
    code, first, _ = run("backfill", write_night(tmp_path / "n1", users), state, e)
    assert code == 0 and first["data_points"] == {"sent": 200, "full_resend": 200}
    for attrs in users.values():
        attrs["pets[id]"] = [{"id": 3, "kind": "cat"}, {"id": 4, "kind": "dog"}]
    users["u0"]["tier"] = None
    code, summary, _ = run("sync", write_night(tmp_path / "n2", users), state, e, "--accept", "pets[id]")
    assert code == 0, summary
    # 40 arrays sent whole (4 each) and one null written; a full resend: 40 arrays, 39 tiers and that null.
    assert summary["data_points"] == {"sent": 161, "full_resend": 200}


_props = st.none() | st.fixed_dictionaries({}, optional={
    "screen": st.sampled_from(["home", "search"]), "n": st.integers(0, 3),
    "nested": st.fixed_dictionaries({"a": st.integers(0, 2)}, optional={"b": st.sampled_from(["x", "y"])})})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(_props, st.booleans()), min_size=1, max_size=8), st.sampled_from(["events", "purchases"]))
def test_events_and_purchases_never_cost_more_than_the_full_resend(rows, dataset):
    """An occurrence is sent once, whole, at the cost the full resend counts for it (one plus its properties):
    what a night sends is the full resend less what Braze already has."""
    from transforms.normalize import normalize_events, normalize_purchases

    def frame(items):
        if dataset == "events":
            data = [{"event_id": f"e{i}", "external_id": "u1", "name": "opened", "time": "2026-11-01T00:00:00Z",
                     "properties": p} for i, p in items]
            return normalize_events(_with_origin(data)).good.collect()
        data = [{"purchase_id": f"p{i}", "external_id": "u1", "product_id": "sku", "currency": "USD", "price": 1.5,
                 "time": "2026-11-01T00:00:00Z", "properties": p} for i, p in items]
        return normalize_purchases(_with_origin(data)).good.collect()

    numbered = list(enumerate(p for p, _ in rows))
    earlier = [(i, p) for (i, p), (_, before) in zip(numbered, rows, strict=True) if before]
    acked = pl.DataFrame(schema=SCHEMAS[dataset])
    if earlier:
        first = frame(earlier)
        sent_first = deltas.diff_occurrences(first.lazy(), acked.lazy(), EMPTY_HELD, dataset=dataset,
                                             key=first.columns[0]).send.collect()
        full_first = deltas.full_resend_cost(None, [first.lazy()]).collect()
        assert int(sent_first["data_points"].sum()) == full_first["dp"][0]  # nothing acknowledged yet: all of it
        acked = sent_first.select("key", "fingerprint").cast(SCHEMAS[dataset])
    tonight = frame(numbered)
    send = deltas.diff_occurrences(tonight.lazy(), acked.lazy(), EMPTY_HELD, dataset=dataset,
                                   key=tonight.columns[0]).send.collect()
    full = deltas.full_resend_cost(None, [tonight.lazy()]).collect()
    cost = dict(zip(tonight[tonight.columns[0]], tonight["data_points"], strict=True))
    assert int(send["data_points"].sum() or 0) <= full["dp"][0]
    assert all(cost[k] == p for k, p in zip(send["key"], send["data_points"], strict=True))


def _with_origin(rows: list[dict]) -> pl.LazyFrame:
    text = "\n".join(json.dumps(r) for r in rows).encode()
    frame = pl.read_ndjson(io.BytesIO(text), infer_schema_length=None)
    return frame.with_columns(_file=pl.lit("x.ndjson"), _row=pl.int_range(1, pl.len() + 1, dtype=pl.Int64)).lazy()
