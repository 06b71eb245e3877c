"""Issue 13 point 1: any Unicode in any field gives byte-correct bodies, and a malformed object is held.

Before the fix a non-ASCII external_id cut the user object at a character position computed from a byte
length: the batch body was not JSON, the backfill crashed and every rerun crashed again (wedged state).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl

from connectors.state.snapshot import SCHEMAS
from tests.conftest import API_KEY
from transforms.deltas import MALFORMED, diff_users, is_json, json_text

HOSTILE = ["josé", "zz", "日本語-ユーザー", "emoji-🦄-ok", "ÅØÆ\u00a0nbsp", 'quote"back\\slash', "tab\tnew\nline"]


def _cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "braze_migrate.cli.main", *args], capture_output=True, text=True,
                          env=env, timeout=300, check=False)


def _export(folder: Path) -> Path:
    folder.mkdir(parents=True)
    pl.DataFrame({
        "external_id": HOSTILE,
        "first_name": ["Zoë", "Ünal", "太郎", "🦄", "Øyvind", "O'Brien", "Łukasz"],
        "città": ["Besançon", "Zürich", "東京", "🏙", "Tromsø", "Köln", "Łódź"],
        "tags": [["ça", "va"], ["ß"], ["日本"], ["🦄"], [], ["\\"], ['"']],
    }).write_parquet(folder / "users.parquet")
    pl.DataFrame({
        "event_id": [f"e-{i}" for i in range(len(HOSTILE))],
        "external_id": HOSTILE,
        "name": ["connexión", "anmeldung", "ログイン", "🦄", "innlogging", "login", "zalogowanie"],
        "time": ["2026-11-01T12:00:00Z"] * len(HOSTILE),
        "properties": [json.dumps({"lieu": "café", "ключ": "значение"}, ensure_ascii=False)] * len(HOSTILE),
    }).write_csv(folder / "events.csv")
    return folder


def test_json_text_is_byte_correct_for_any_unicode():
    values = HOSTILE + ["", "a" * 300 + "é", None]
    out = pl.DataFrame({"v": values}).select(json_text(pl.col("v"))).to_series().to_list()
    assert [json.loads(t) for t in out] == values


def test_a_malformed_object_is_held_with_a_reason_and_the_rest_is_sent():
    tonight = pl.LazyFrame(
        [{"external_id": "ok", "city": '"Oslo"', "_file": "u.csv", "_row": 1, "_dropped": []},
         {"external_id": "bad", "city": '"Oslo', "_file": "u.csv", "_row": 2, "_dropped": []}],
        schema={"external_id": pl.Utf8, "city": pl.Utf8, "_file": pl.Utf8, "_row": pl.Int64,
                "_dropped": pl.List(pl.Utf8)})
    d = diff_users(tonight, pl.LazyFrame(schema={"external_id": pl.Utf8, "city": pl.Utf8}),
                   pl.LazyFrame(schema=SCHEMAS["held"]))
    send = d.send.collect()
    assert send["key"].to_list() == ["ok"] and send.select(is_json(pl.col("object")).all()).item()
    kept = d.kept.collect().filter(pl.col("key") == "bad").row(0, named=True)
    assert (kept["bucket"], kept["reason"]) == ("rejected", MALFORMED)
    assert d.next_rows.collect()["external_id"].to_list() == ["ok"]  # the held user's snapshot does not advance


def test_non_ascii_everywhere_loads_exactly_and_a_rerun_sends_nothing(sandbox, tmp_path):
    src = _export(tmp_path / "export")
    env = {**os.environ, "BRAZE_REST_ENDPOINT": sandbox.url, "BRAZE_API_KEY": API_KEY,
           "PREFECT_HOME": str(tmp_path / "prefect")}
    state = str(tmp_path / "state")
    first = _cli("backfill", str(src), "--state", state, "--no-prefect", "--json", env=env)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "Traceback" not in first.stderr

    profiles = {p["external_id"]: p for p in sandbox.profiles().values() if p.get("external_id")}
    assert set(profiles) == set(HOSTILE)
    assert profiles["josé"]["first_name"] == "Zoë"
    assert profiles["日本語-ユーザー"]["custom_attributes"] == {"città": "東京", "tags": ["日本"]}
    assert profiles['quote"back\\slash']["custom_attributes"]["tags"] == ["\\"]
    assert [e["name"] for e in profiles["emoji-🦄-ok"]["events"]] == ["🦄"]
    assert profiles["tab\tnew\nline"]["events"][0]["properties"] == {"lieu": "café", "ключ": "значение"}

    again = _cli("sync", str(src), "--state", state, "--no-prefect", "--json", "--no-skip-unchanged", env=env)
    assert again.returncode == 0, again.stderr[-2000:]
    summary = json.loads(again.stdout)
    assert summary["datasets"]["users"]["unchanged"] == len(HOSTILE)
    assert summary["datasets"]["events"]["unchanged"] == len(HOSTILE)
