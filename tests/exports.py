"""Small hand-made exports with known expected Braze state, written as Parquet, CSV or NDJSON."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl

T0 = datetime(2026, 11, 1, 12, 0, 0, tzinfo=UTC)

DAY1_USERS = [
    {"external_id": "000123", "updated_at": T0, "email": "ann@example.com", "first_name": "Ann", "country": "NO",
     "dob": date(1990, 5, 1), "zip": "0150", "vip": True, "score": 12, "balance": 3.5, "city": "Oslo"},
    {"external_id": "u2", "updated_at": T0, "email": "not-an-email", "first_name": "Bob", "country": "SE",
     "dob": None, "zip": "1000", "vip": False, "score": 7, "balance": None, "city": "Malmo"},
    {"external_id": None, "updated_at": T0, "email": None, "first_name": "Nobody", "country": "DK",
     "dob": None, "zip": "2000", "vip": False, "score": 1, "balance": None, "city": "Aarhus"},
    {"external_id": "u3", "updated_at": T0, "email": "old@example.com", "first_name": "Old", "country": "FI",
     "dob": None, "zip": "3000", "vip": False, "score": 1, "balance": None, "city": "Turku"},
    {"external_id": "u3", "updated_at": datetime(2026, 11, 2, tzinfo=UTC), "email": "cy@example.com",
     "first_name": "Cy", "country": "FI", "dob": None, "zip": "3001", "vip": True, "score": 2, "balance": 1.25,
     "city": "Espoo"},
]
DAY1_PURCHASES = [
    {"purchase_id": "p1", "external_id": "000123", "product_id": "sku-1", "currency": "usd", "price": 9.99,
     "time": T0, "quantity": 2, "properties": json.dumps({"color": "red"})},
    {"purchase_id": "p2", "external_id": "u2", "product_id": "sku-2", "currency": "XYZ", "price": 5.0,
     "time": T0, "quantity": 1, "properties": None},
    {"purchase_id": "p3", "external_id": "u3", "product_id": "sku-3", "currency": "EUR", "price": 1.0,
     "time": T0, "quantity": 1, "properties": None},
    {"purchase_id": "p1", "external_id": "000123", "product_id": "sku-1", "currency": "usd", "price": 9.99,
     "time": T0, "quantity": 2, "properties": json.dumps({"color": "red"})},
]
DAY1_EVENTS = [
    {"event_id": "e1", "external_id": "000123", "name": "login", "time": T0, "properties": json.dumps({"via": "ios"})},
    {"event_id": "e2", "external_id": "u2", "name": "login", "time": None, "properties": None},
    {"event_id": "e3", "external_id": "u3", "name": "signup", "time": T0, "properties": None},
]
DAY1_TOKENS = [
    {"external_id": "000123", "app_id": "app-ios", "token": "a" * 64, "device_id": None, "platform": "ios"},
    {"external_id": "u2", "app_id": "app-web", "token": "webtoken-1", "device_id": None, "platform": "web"},
    {"external_id": None, "app_id": "app-android", "token": "anon-token-" + "b" * 40, "device_id": None,
     "platform": "android"},
]

USER_SCHEMA = {"external_id": pl.Utf8, "updated_at": pl.Datetime("us", "UTC"), "email": pl.Utf8,
               "first_name": pl.Utf8, "country": pl.Utf8, "dob": pl.Date, "zip": pl.Utf8, "vip": pl.Boolean,
               "score": pl.Int64, "balance": pl.Float64, "city": pl.Utf8}
PURCHASE_SCHEMA = {"purchase_id": pl.Utf8, "external_id": pl.Utf8, "product_id": pl.Utf8, "currency": pl.Utf8,
                   "price": pl.Float64, "time": pl.Datetime("us", "UTC"), "quantity": pl.Int64,
                   "properties": pl.Utf8}
EVENT_SCHEMA = {"event_id": pl.Utf8, "external_id": pl.Utf8, "name": pl.Utf8, "time": pl.Datetime("us", "UTC"),
                "properties": pl.Utf8}
TOKEN_SCHEMA = {"external_id": pl.Utf8, "app_id": pl.Utf8, "token": pl.Utf8, "device_id": pl.Utf8,
                "platform": pl.Utf8}


def write_export(folder: Path, fmt: str, users=DAY1_USERS, purchases=DAY1_PURCHASES, events=DAY1_EVENTS,
                 tokens=DAY1_TOKENS) -> Path:
    """Write the four datasets in one format (push tokens as a folder of two parts)."""
    folder.mkdir(parents=True, exist_ok=True)
    frames = {
        "users": pl.DataFrame(users, schema=USER_SCHEMA),
        "purchases": pl.DataFrame(purchases, schema=PURCHASE_SCHEMA),
        "events": pl.DataFrame(events, schema=EVENT_SCHEMA),
    }
    for name, df in frames.items():
        _write(df, folder / f"{name}.{_ext(fmt)}", fmt)
    tok = pl.DataFrame(tokens, schema=TOKEN_SCHEMA)
    (folder / "push_tokens").mkdir(exist_ok=True)
    half = max(1, tok.height // 2)
    _write(tok.head(half), folder / "push_tokens" / f"part-0001.{_ext(fmt)}", fmt)
    _write(tok.tail(tok.height - half), folder / "push_tokens" / f"part-0002.{_ext(fmt)}", fmt)
    return folder


def _ext(fmt: str) -> str:
    return {"parquet": "parquet", "csv": "csv", "ndjson": "ndjson"}[fmt]


def _write(df: pl.DataFrame, path: Path, fmt: str) -> None:
    if fmt == "parquet":
        df.write_parquet(path)
    elif fmt == "csv":
        df.with_columns(pl.col(pl.Datetime).dt.strftime("%Y-%m-%dT%H:%M:%SZ")).write_csv(path)
    else:
        df.with_columns(pl.col(pl.Datetime).dt.strftime("%Y-%m-%dT%H:%M:%SZ")).write_ndjson(path)


def bulk_export(folder: Path, n_users: int, *, purchases_per_user: int = 1, events_per_user: int = 1,
                city: str = "Oslo") -> Path:
    """A larger valid export whose purchases and events carry their own id in `properties.id`, so a test
    can count every occurrence Braze stored."""
    folder.mkdir(parents=True, exist_ok=True)
    ids = [f"user-{i:06d}" for i in range(n_users)]
    pl.DataFrame({"external_id": ids, "city": [city] * n_users, "score": list(range(n_users))}).write_parquet(
        folder / "users.parquet")
    pids = [f"p-{i:06d}-{k}" for i in range(n_users) for k in range(purchases_per_user)]
    pl.DataFrame({
        "purchase_id": pids,
        "external_id": [ids[i] for i in range(n_users) for _ in range(purchases_per_user)],
        "product_id": ["sku"] * len(pids), "currency": ["EUR"] * len(pids), "price": [1.5] * len(pids),
        "time": [T0] * len(pids), "properties": [json.dumps({"id": p}) for p in pids],
    }).write_parquet(folder / "purchases.parquet")
    eids = [f"e-{i:06d}-{k}" for i in range(n_users) for k in range(events_per_user)]
    pl.DataFrame({
        "event_id": eids,
        "external_id": [ids[i] for i in range(n_users) for _ in range(events_per_user)],
        "name": ["visit"] * len(eids), "time": [T0] * len(eids), "properties": [json.dumps({"id": e}) for e in eids],
    }).write_parquet(folder / "events.parquet")
    return folder


def occurrence_counts(profiles: dict) -> dict[str, int]:
    """How many times each purchase/event id (from `properties.id`) is stored across all profiles."""
    counts: dict[str, int] = {}
    for p in profiles.values():
        for occ in list(p.get("purchases", [])) + list(p.get("events", [])):
            key = (occ.get("properties") or {}).get("id")
            if key is not None:
                counts[key] = counts.get(key, 0) + 1
    return counts
