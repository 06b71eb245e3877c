"""A history-heavy export: users with a few attributes and a long purchase and event history, deterministic.

    python -m bench.history OUT_DIR USERS EVENTS PURCHASES

Each event (and purchase) j belongs to a user drawn by a hash of j, so per-user counts vary (some users
have none, a few have many) and the totals are exact. Files hold at most `ROWS_PER_FILE` rows and are
written one at a time, so making a 100M-event history never holds more than one file in memory.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from bench.data import OUT, generator

ROWS_PER_FILE = 1_000_000
SEED = 11
VERSION = 1
START = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
EVENT_NAMES = ["viewed_item", "added_to_cart", "opened_app", "searched", "shared_item", "rated_item"]
PRODUCTS = ["sku-1001", "sku-1002", "sku-2001", "sku-3001", "sku-3002", "sku-4001", "sku-5001"]


@dataclass(frozen=True)
class History:
    """A history-heavy export folder and its row counts."""

    folder: Path
    users: int
    events: int
    purchases: int


def ensure_history(users: int, events: int, purchases: int, root: Path = OUT / "history", *,
                   single_file: bool = False) -> History:
    """Write (or reuse) the export of `users` users with `events` events and `purchases` purchases.

    `single_file`: each of events and purchases is one Parquet file (`events.parquet`), the way a warehouse
    unload or a `COPY` job writes it, made of row groups of at most `ROWS_PER_FILE` rows (pyarrow's default);
    otherwise a folder of files of `ROWS_PER_FILE` rows."""
    folder = root / (f"{users}-{events}-{purchases}" + ("-single" if single_file else ""))
    wanted = {"users": users, "events": events, "purchases": purchases, "seed": SEED, "version": VERSION,
              "single_file": single_file}
    stamp = folder / "history.json"
    out = History(folder, users, events, purchases)
    if stamp.exists() and json.loads(stamp.read_text()) == wanted:
        return out
    shutil.rmtree(folder, ignore_errors=True)
    gen = generator()
    rng = gen.Rng(SEED)
    (folder / "users").mkdir(parents=True)
    # A few attributes per user: the profile fields and a tier, not the 21 of the users bench.
    (gen.users(rng, users, 1).select("external_id", "email", "first_name", "country", "loyalty_tier")
     .write_parquet(folder / "users" / "part-00000.parquet"))
    width = max(6, len(str(users + users // 20)))
    for name, total in (("events", events), ("purchases", purchases)):
        chunks = ((start, min(ROWS_PER_FILE, total - start)) for start in range(0, total, ROWS_PER_FILE))
        if single_file:
            with pq.ParquetWriter(folder / f"{name}.parquet", _schema(rng, name, users, width)) as writer:
                for start, rows in chunks:
                    writer.write_table(occurrences(rng, name, start, rows, users, width).to_arrow())
            continue
        (folder / name).mkdir()
        for f, (start, rows) in enumerate(chunks):
            occurrences(rng, name, start, rows, users, width).write_parquet(folder / name / f"part-{f:05d}.parquet")
    stamp.write_text(json.dumps(wanted))
    return out


def _schema(rng, name: str, users: int, width: int):
    return occurrences(rng, name, 0, 1, users, width).to_arrow().schema


def occurrences(rng, name: str, start: int, rows: int, users: int, width: int) -> pl.DataFrame:
    """Rows `start`..`start + rows` of the events or purchases history."""
    j = pl.int_range(start, start + rows, dtype=pl.Int64)
    owner = (rng.below(f"{name}/owner", pl.col("j"), users) + 1).cast(pl.String).str.zfill(width)
    when = pl.lit(START) + pl.duration(seconds=rng.below(f"{name}/time", pl.col("j"), 2 * 365 * 86400))
    frame = pl.LazyFrame().select(j.alias("j")).with_columns(external_id=owner, time=when)
    if name == "events":
        frame = frame.with_columns(
            event_id=pl.lit("E") + pl.col("j").cast(pl.String).str.zfill(10),
            name=rng.choice("events/name", pl.col("j"), EVENT_NAMES),
            properties=pl.when(rng.uniform("events/props", pl.col("j")) < 0.5).then(
                pl.struct(screen=rng.choice("events/screen", pl.col("j"), ["home", "search", "item", "cart"]))),
        ).select("event_id", "external_id", "name", "time", "properties")
    else:
        frame = frame.with_columns(
            purchase_id=pl.lit("P") + pl.col("j").cast(pl.String).str.zfill(10),
            product_id=rng.choice("purchases/product", pl.col("j"), PRODUCTS),
            currency=pl.lit("USD"),
            price=(rng.below("purchases/price", pl.col("j"), 20_000) + 99).cast(pl.Float64) / 100,
            quantity=1 + rng.below("purchases/qty", pl.col("j"), 3),
        ).select("purchase_id", "external_id", "product_id", "currency", "price", "quantity", "time")
    return frame.collect()


def history_cases(users: int, events: int, purchases: int, out: Path, *, trace: bool = True) -> dict:
    """Peak RSS and requests planned for the history-heavy export and for the same users with half the
    history (each planned in a fresh child against an empty state: a first backfill), plus the half in
    `per_array` mode; the ratio of the two peaks says whether memory follows the history. Events and purchases
    are each one Parquet file (`single_file`): memory must follow a batch, not the largest file."""
    from bench.memory import plan_peak

    full = ensure_history(users, events, purchases, out / "history", single_file=True)
    half = ensure_history(users, events // 2, purchases // 2, out / "history", single_file=True)
    cases = {}
    for name, made, mode in (("full", full, "combined"), ("half", half, "combined"),
                             ("half_per_array", half, "per_array")):
        state = out / "history-state"
        shutil.rmtree(state, ignore_errors=True)
        report = plan_peak(made.folder, state, out / "plan-rss", trace=trace, batch_mode=mode)
        shutil.rmtree(state, ignore_errors=True)
        report.update(users=made.users, events=made.events, purchases=made.purchases, batch_mode=mode,
                      minimum_batches=-(-report["objects"] // 75))
        cases[name] = report
    return {"cases": cases, "full_over_half": cases["full"]["peak_rss_bytes"] / cases["half"]["peak_rss_bytes"],
            "folder": str(full.folder)}


def main(argv: list[str] | None = None) -> int:
    out, users, events, purchases = (argv or sys.argv[1:])[:4]
    made = ensure_history(int(users), int(events), int(purchases), Path(out))
    print(made.folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
