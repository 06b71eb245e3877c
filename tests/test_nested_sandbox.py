"""Issue 16 acceptance through the CLI and the sandbox over HTTP: arrays of objects changed item by item,
nested objects merged key by key, subscription groups set and changed; the profile equals the export after
each night, and Braze is billed only for the keys written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl

from tests.conftest import API_KEY

PETS = pl.List(pl.Struct({"id": pl.Int64, "name": pl.String, "kind": pl.String, "vet": pl.Struct({"city": pl.String})}))
BOOK = pl.Struct({"title": pl.String, "meta": pl.Struct({"year": pl.Int64, "pages": pl.Int64})})
GROUPS = pl.List(pl.Struct({"id": pl.String, "state": pl.String}))


def pets(changed: dict | None = None, drop: int | None = None, add: int | None = None,
         lose: dict | None = None) -> list[dict]:
    items = [{"id": i, "name": f"pet{i}", "kind": "dog", "vet": {"city": "Oslo"} if i % 2 else None}
             for i in range(20)]
    for i, name in (changed or {}).items():
        items[i]["name"] = name
    for i, key in (lose or {}).items():
        items[i][key] = None
    items = [p for p in items if p["id"] != drop]
    if add is not None:
        items.append({"id": add, "name": "new", "kind": "cat", "vet": None})
    return items


def night(folder: Path, pet_items: list[dict], year: int, groups: list[dict]) -> Path:
    folder.mkdir(parents=True)
    pl.DataFrame(
        {"external_id": ["a", "b"], "pets": [pet_items, []],
         "book": [{"title": "Dune", "meta": {"year": year, "pages": 412}}, None],
         "subscription_groups": [groups, None]},
        schema={"external_id": pl.String, "pets": PETS, "book": BOOK, "subscription_groups": GROUPS},
    ).rename({"pets": "pets[id]"}).write_parquet(folder / "users.parquet")
    return folder


def load(kind: str, src: Path, state: Path, sandbox, tmp_path: Path) -> dict:
    env = {**os.environ, "BRAZE_REST_ENDPOINT": sandbox.url, "BRAZE_API_KEY": API_KEY,
           "PREFECT_HOME": str(tmp_path / "prefect"), "BRAZE_MIGRATE_PLAN_RETENTION_DAYS": "30"}
    r = subprocess.run([sys.executable, "-m", "braze_migrate.cli.main", kind, str(src), "--state", str(state), "--no-prefect",
                        "--json"], capture_output=True, text=True, env=env, timeout=300, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout)


def sent_attributes(state: Path, run_id: str) -> dict:
    """The attributes objects a run sent, by external_id (from its plan's request bodies)."""
    files = [f for f in (state / "runs" / run_id / "plan").rglob("*.parquet")
             if "body" in pl.read_parquet_schema(f)]
    bodies = pl.concat([pl.read_parquet(f, columns=["body"]) for f in files])["body"]
    return {o["external_id"]: o for b in bodies for o in json.loads(b).get("attributes", [])}


def exported(items: list[dict]) -> dict:
    """Items as the export has them, without null keys at any depth, by id (Braze appends added items at the
    end)."""
    def strip(value):
        return {k: strip(v) for k, v in value.items() if v is not None} if isinstance(value, dict) else value

    return {p["id"]: strip(p) for p in items}


def test_each_night_sends_only_what_changed_and_the_profile_equals_the_export(sandbox, tmp_path):
    state = tmp_path / "state"
    g1 = [{"id": "g-news", "state": "subscribed"}, {"id": "g-offers", "state": "unsubscribed"}]
    nights = [
        (pets(), 1965, g1),
        (pets(changed={7: "Rex"}), 1965, g1),                      # 1 of 20 items changed: one $update
        (pets(changed={7: "Rex"}, drop=3), 1966, g1),              # one $remove; book.meta.year merged
        (pets(changed={7: "Rex"}, drop=3, add=40), 1966,           # one $add; one group changed
         [{"id": "g-news", "state": "unsubscribed"}, g1[1]]),
        (pets(changed={7: "Rex"}, drop=3, add=40, lose={5: "name"}), 1966,  # item 5 lost its name: removed by
         [{"id": "g-news", "state": "unsubscribed"}, g1[1]]),               # it and added again
        (pets(changed={7: "Rex"}, drop=3, add=40, lose={5: "name", 9: "vet"}), 1966,  # item 9 lost its vet: no
         [{"id": "g-news", "state": "unsubscribed"}, g1[1]]),                        # key only it holds: whole
    ]
    points = []
    for i, (items, year, groups) in enumerate(nights):
        before = sandbox.stats()["data_points"]
        summary = load("backfill" if i == 0 else "sync", night(tmp_path / f"n{i}", items, year, groups), state,
                       sandbox, tmp_path)
        assert summary["status"] == "completed"
        points.append((summary["data_points"]["sent"], sandbox.stats()["data_points"] - before))
        sent = sent_attributes(state, summary["run_id"])
        if i == 1:
            assert sent == {"a": {"external_id": "a", "pets": {"$update": [
                {"$identifier_key": "id", "$identifier_value": 7, "$new_object": {"name": "Rex"}}]},
                "_merge_objects": True}}
        if i == 2:
            assert sent == {"a": {"external_id": "a", "pets": {"$remove": [
                {"$identifier_key": "id", "$identifier_value": 3}]}, "book": {"meta": {"year": 1966}},
                "_merge_objects": True}}
        if i == 3:
            assert sent == {"a": {"external_id": "a", "pets": {"$add": [{"id": 40, "name": "new", "kind": "cat"}]},
                                  "subscription_groups": [{"subscription_group_id": "g-news",
                                                           "subscription_state": "unsubscribed"}]}}
        if i == 4:
            assert sent == {"a": {"external_id": "a", "pets": {
                "$add": [{"id": 5, "kind": "dog", "vet": {"city": "Oslo"}}],
                "$remove": [{"$identifier_key": "name", "$identifier_value": "pet5"}]}}}
        if i == 5:
            assert sent == {"a": {"external_id": "a", "pets": [
                {k: v for k, v in p.items() if v is not None} for p in items]}}
        a = sandbox.profile("a")
        assert {p["id"]: p for p in a["custom_attributes"]["pets"]} == exported(items)
        assert a["custom_attributes"]["book"] == {"title": "Dune", "meta": {"year": year, "pages": 412}}
        assert a["subscription_groups"] == {g["id"]: g["state"] for g in groups}
    assert sandbox.profile("b")["custom_attributes"] == {"pets": []}
    # planned = billed: night 1 a's whole array (20 items x 3 values + 10 vet cities) + book (3 values) and b's
    # empty array (1); then 1 changed key; 1 removed item + meta.year under _merge_objects; the 3 values of the
    # added item; 1 removal criterion + the 3 values of item 5 added again; the whole array (20 items x 3 values
    # less the name of 5, plus the vet cities of 1, 5, 7, 11, 13, 15, 17 and 19).
    assert points == [(74, 74), (1, 1), (2, 2), (3, 3), (4, 4), (67, 67)]


def test_verify_compares_nested_values_and_arrays_of_objects(sandbox, tmp_path):
    from braze_migrate.ops import verify as v

    state = tmp_path / "state"
    src = night(tmp_path / "n0", pets(), 1965, [{"id": "g", "state": "subscribed"}])
    load("backfill", src, state, sandbox, tmp_path)
    assert v.verify(str(src), state, 10, endpoint=sandbox.url, api_key=API_KEY).ok
    stored = sandbox.profile("a")["custom_attributes"]
    sandbox.patch_user("a", custom_attributes={"book": {"title": "Dune", "meta": {"year": 1965}},
                                               "pets": stored["pets"][:-1]})
    report = v.verify(str(src), state, 10, endpoint=sandbox.url, api_key=API_KEY)
    assert sorted((m.field, m.kind) for m in report.mismatches) == [("book", "value_different"),
                                                                     ("pets[id]", "value_different")]


def test_the_sample_nights_bill_what_the_plan_counted(sandbox, tmp_path):
    """data/samples day1 then day2 (a nested `preferences` object among plain attributes, events, purchases and
    tokens): each night the sandbox bills exactly the data points the plan counted."""
    samples = Path(__file__).resolve().parents[1] / "data" / "samples"
    state = tmp_path / "state"
    for kind, day in (("backfill", "day1"), ("sync", "day2")):
        before = sandbox.stats()["data_points"]
        summary = load(kind, samples / day, state, sandbox, tmp_path)
        assert summary["data_points"]["sent"] == sandbox.stats()["data_points"] - before > 0


PET = pl.Struct({"id": pl.Int64, "name": pl.String, "kind": pl.String, "age": pl.Int64,
                 "vet": pl.Struct({"city": pl.String, "phone": pl.String})})


def random_pets(rng, n_users: int, before: dict[str, list[dict]] | None) -> dict[str, list[dict]]:
    """Each user's pets tonight: from the night before, items renamed, aged, moved to another vet, losing a
    key or a nested key, gone, or new."""
    out = {}
    for u in range(n_users):
        eid = f"u{u:03d}"
        items = [dict(p, vet=dict(p["vet"]) if p["vet"] else None) for p in (before or {}).get(eid, [])]
        if before is None:
            items = [{"id": 100 * u + i, "name": f"pet{u}-{i}", "kind": rng.choice(["dog", "cat", "bird"]),
                      "age": rng.randrange(1, 20), "vet": {"city": "Oslo", "phone": f"+47{u}{i}"} if i % 2 else None}
                     for i in range(rng.randrange(0, 6))]
        kept = []
        for p in items:
            roll = rng.random()
            if roll < 0.1:
                continue  # gone
            if roll < 0.2:
                p["name"] = p["name"] + "!"
            elif roll < 0.3:
                p["age"] = None  # lost a key: removed by a value only it holds, added again
            elif roll < 0.35 and p["vet"]:
                p["vet"]["phone"] = None  # lost a nested key
            elif roll < 0.4:
                p["vet"] = {"city": "Bergen", "phone": None}
            kept.append(p)
        if rng.random() < 0.3:
            new_id = max([p["id"] for p in kept] + [100 * u + 49]) + 1
            kept.append({"id": new_id, "name": "new", "kind": "fish", "age": 1, "vet": None})
        out[eid] = kept
    return out


def test_array_of_objects_nights_equal_the_export_and_bill_what_was_planned(sandbox, tmp_path, monkeypatch):
    """Three nights of 300 users' pets with every kind of item change, against the strict sandbox (an `$update`
    without `_merge_objects` overwrites the item): each night every profile holds exactly the export's items
    and the sandbox bills exactly the data points the plan counted. (Most users change every night: the guard
    against a broken export is opened.)"""
    import random

    monkeypatch.setenv("BRAZE_MIGRATE_GUARD_CHANGED_SHARE", "1")
    monkeypatch.setenv("BRAZE_MIGRATE_GUARD_UNSET_SHARE", "1")

    rng, state, nights = random.Random(22), tmp_path / "state", None
    for night_no in range(3):
        nights = random_pets(rng, 300, nights)
        folder = tmp_path / f"r{night_no}"
        folder.mkdir()
        pl.DataFrame({"external_id": list(nights), "pets[id]": list(nights.values())},
                     schema={"external_id": pl.String, "pets[id]": pl.List(PET)}).write_parquet(folder / "users.parquet")
        before = sandbox.stats()["data_points"]
        summary = load("backfill" if night_no == 0 else "sync", folder, state, sandbox, tmp_path)
        assert summary["status"] == "completed"
        assert summary["data_points"]["sent"] == sandbox.stats()["data_points"] - before
        held = {eid: {p["id"]: p for p in (sandbox.profile(eid) or {"custom_attributes": {}})["custom_attributes"]
                      .get("pets", [])} for eid in nights}
        assert held == {eid: exported(items) for eid, items in nights.items()}, f"night {night_no}"
