"""Generate the bundled sample exports (day1, day2) or large exports for benchmarks.

    python data/samples/generate.py                # rewrite data/samples/day1 and day2 (committed)
    python data/samples/generate.py --users 1000000 --out bench/out/1m --format parquet --seed 7

Deterministic: every random draw is SplitMix64 of (seed, stream name, row number), computed with Polars
integer expressions, so the output depends on the seed only (not on the Polars version's hashing).
Vectorised: 1M users (both nights, ~9M rows in all, Parquet) took ~32 s of CPU on a 2-vCPU machine.
The samples mix every format and layout and plant the bad rows listed in data/samples/README.md;
benchmark exports are clean and use one format.
Stdlib and Polars only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import zlib
from pathlib import Path

import polars as pl

SAMPLE_USERS = 240
SAMPLE_SEED = 7
SNAPSHOT_DAY1 = dt.datetime(2026, 11, 26, 2, 0)
SNAPSHOT_DAY2 = SNAPSHOT_DAY1 + dt.timedelta(days=1)
MOVED_TO = "000010"
U64 = pl.UInt64
_MASK = 2**64 - 1


def _words(text: str) -> list[str]:
    return text.split()


COUNTRIES = [  # country, language, time zone, city, currency, phone prefix
    ("US", "en", "America/New_York", "New York", "USD", "+1212"),
    ("US", "en", "America/Los_Angeles", "Los Angeles", "USD", "+1213"),
    ("DE", "de", "Europe/Berlin", "Berlin", "EUR", "+4930"),
    ("FR", "fr", "Europe/Paris", "Paris", "EUR", "+331"),
    ("GB", "en", "Europe/London", "London", "GBP", "+4420"),
    ("ES", "es", "Europe/Madrid", "Madrid", "EUR", "+3491"),
    ("IT", "it", "Europe/Rome", "Milano", "EUR", "+3902"),
    ("BR", "pt", "America/Sao_Paulo", "São Paulo", "BRL", "+5511"),
    ("JP", "ja", "Asia/Tokyo", "Tokyo", "JPY", "+813"),
    ("IN", "hi", "Asia/Kolkata", "Mumbai", "INR", "+9122"),
    ("CA", "fr", "America/Toronto", "Montréal", "CAD", "+1514"),
    ("MX", "es", "America/Mexico_City", "Ciudad de México", "MXN", "+5255"),
]
FIRST_NAMES = _words(
    "Ada Alan Amara Ana Ben Carla Chen Daniel Elena Emma Farah Felix Grace Hana Hugo Ines Ivan Jonas Julia "
    "Kenji Lea Lucas Maya Mateo Nina Noah Olga Omar Paula Priya Rafael Sara Sofia Tom Uma Victor Wen Yara Zoe"
)
LAST_NAMES = _words(
    "Alvarez Becker Costa Dubois Evans Fischer García Hoffmann Ito Jensen Kim Laurent Martin Müller Nakamura "
    "Novak Okafor Patel Quinn Rossi Santos Schmidt Silva Singh Tanaka Thomas Weber Wilson Yamamoto Zhang"
)
DOMAINS = ["example.com", "example.org", "example.net"]
TIERS = ["bronze", "silver", "gold", "platinum"]
CATEGORIES = ["books", "garden", "kitchen", "outdoor", "music", "toys", "fashion", "games"]
CHANNELS = ["email", "push", "sms"]
PRODUCTS = [  # product_id, price in the currency's base unit
    ("sku-basil-seeds", 3.49),
    ("sku-chef-knife", 59.0),
    ("sku-hiking-boots", 129.95),
    ("sku-vinyl-jazz", 24.5),
    ("sku-board-game", 39.99),
    ("sku-rain-jacket", 89.0),
    ("sku-espresso-cup", 12.0),
    ("sku-tent-2p", 199.0),
    ("sku-novel-paperback", 9.99),
    ("sku-puzzle-1000", 17.25),
    ("sku-garden-hose", 27.8),
    ("sku-headphones", 149.0),
]
EVENT_NAMES = ["app_open", "viewed_product", "added_to_cart", "search", "wishlist_add"]
SCREENS = ["home", "product", "cart", "search", "profile"]
APPS = {"ios": "6f1b3c2e-5a1d-4d8e-9c77-0a1b2c3d4e5f", "android": "a8e2d4f6-1b3c-4e5f-8a9b-c0d1e2f3a4b5"}
TIME_FORMATS = ["%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S%.3f+00:00"]


# --- deterministic randomness as Polars expressions ----------------------------------------------------


def _mix_int(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def _mix(x: pl.Expr) -> pl.Expr:
    """SplitMix64's finaliser with wrapping UInt64 arithmetic (`// 2**k` is a right shift)."""
    x = x + pl.lit(0x9E3779B97F4A7C15, U64)
    x = x.xor(x // pl.lit(2**30, U64)) * pl.lit(0xBF58476D1CE4E5B9, U64)
    x = x.xor(x // pl.lit(2**27, U64)) * pl.lit(0x94D049BB133111EB, U64)
    return x.xor(x // pl.lit(2**31, U64))


class Rng:
    """Independent random streams keyed by name; draws are a pure function of (seed, stream, row key)."""

    def __init__(self, seed: int):
        self.seed = seed

    def u64(self, stream: str, key: pl.Expr) -> pl.Expr:
        offset = _mix_int((self.seed << 32) ^ zlib.crc32(stream.encode()))
        return _mix(key.cast(U64) + pl.lit(offset, U64))

    def uniform(self, stream: str, key: pl.Expr) -> pl.Expr:
        return (self.u64(stream, key) // pl.lit(2**11, U64)).cast(pl.Float64) / float(2**53)

    def below(self, stream: str, key: pl.Expr, n: int) -> pl.Expr:
        return (self.u64(stream, key) % pl.lit(n, U64)).cast(pl.Int64)

    def choice(self, stream: str, key: pl.Expr, options: list) -> pl.Expr:
        return self.below(stream, key, len(options)).replace_strict(dict(enumerate(options)))

    def draws(self, stream: str, key: pl.Expr, n: int) -> list[pl.Expr]:
        """`n` independent 64-bit draws, aliased `{stream}/{j}` so they can be computed once as columns."""
        return [self.u64(f"{stream}/{j}", key).alias(f"{stream}/{j}") for j in range(n)]


_BYTE_VALUES = pl.Series(range(256), dtype=pl.Int64)
_BYTE_HEX = pl.Series([f"{b:02x}" for b in range(256)], dtype=pl.String)


def hex_text(draw_columns: list[str], n_chars: int) -> pl.Expr:
    """`n_chars` lowercase hex digits from 64-bit draw columns, two digits per byte lookup."""
    pairs = [
        ((pl.col(draw_columns[j // 8]) // pl.lit(256 ** (j % 8), U64)) % pl.lit(256, U64))
        .cast(pl.Int64)
        .replace_strict(_BYTE_VALUES, _BYTE_HEX, return_dtype=pl.String)
        for j in range((n_chars + 1) // 2)
    ]
    return pl.concat_str(pairs).str.slice(0, n_chars)


# --- clean snapshots --------------------------------------------------------------------------------


def users(rng: Rng, n: int, day: int) -> pl.DataFrame:
    """Users of one night: day 2 drops ~2%, adds ~5% new ones, changes ~10% and empties ~3%."""
    total = n if day == 1 else n + max(1, n // 20)
    i = pl.col("i")
    c = rng.below("country", i, len(COUNTRIES))

    def pick(k: int) -> pl.Expr:
        return c.replace_strict({j: row[k] for j, row in enumerate(COUNTRIES)})

    first, last = rng.choice("first", i, FIRST_NAMES), rng.choice("last", i, LAST_NAMES)
    changed = (rng.uniform("changed", i) < 0.10) & (day == 2)
    emptied = (rng.uniform("emptied", i) < 0.03) & (day == 2)
    updated = pl.lit(SNAPSHOT_DAY1) - pl.duration(seconds=rng.below("updated", i, 365 * 86400))
    day2_time = pl.lit(SNAPSHOT_DAY2) - pl.duration(seconds=rng.below("updated2", i, 86400))
    lifetime = (rng.uniform("ltv", i) * 2000).round(2)
    df = (
        pl.LazyFrame()
        .select(pl.int_range(0, total, dtype=pl.Int64).alias("i"))
        .with_columns(
            external_id=_external_id(i, n),
            updated_at=pl.when(changed | emptied).then(day2_time).otherwise(updated),
            email=pl.concat_str(
                first.str.to_lowercase(),
                pl.lit("."),
                last.str.to_lowercase(),
                (i + 1).cast(pl.String),
                pl.lit("@"),
                rng.choice("domain", i, DOMAINS),
            ),
            first_name=first,
            last_name=last,
            phone=pl.when((rng.uniform("has_phone", i) < 0.8) & ~emptied).then(
                pick(5) + rng.below("phone", i, 10**7).cast(pl.String).str.zfill(7)
            ),
            gender=rng.choice("gender", i, ["F", "M", "F", "M", "O", "N", "P", None]),
            dob=(pl.lit(dt.date(1950, 1, 1)) + pl.duration(days=rng.below("dob", i, 20000))).dt.strftime(
                "%Y-%m-%d"
            ),
            country=pick(0),
            home_city=pl.when(~emptied).then(pick(3)),
            language=pick(1),
            time_zone=pick(2),
            email_subscribe=rng.choice(
                "email_sub", i, ["opted_in", "subscribed", "subscribed", "unsubscribed"]
            ),
            push_subscribe=rng.choice("push_sub", i, ["opted_in", "subscribed", "unsubscribed"]),
            zip=rng.below("zip", i, 100000).cast(pl.String).str.zfill(5),
            loyalty_tier=pl.when(changed)
            .then(rng.choice("tier2", i, TIERS))
            .otherwise(rng.choice("tier", i, TIERS)),
            lifetime_value=pl.when(changed).then(lifetime + 25.5).otherwise(lifetime),
            orders_count=rng.below("orders", i, 40) + changed.cast(pl.Int64),
            vip=rng.uniform("vip", i) < 0.1,
            signup_at=(
                pl.lit(dt.datetime(2019, 1, 1)) + pl.duration(seconds=rng.below("signup", i, 7 * 365 * 86400))
            ).dt.replace_time_zone("UTC"),
            last_order_date=pl.when(~emptied).then(
                (pl.lit(dt.date(2025, 1, 1)) + pl.duration(days=rng.below("last_order", i, 690))).cast(
                    pl.Date
                )
            ),
            favorite_categories=pl.concat_list([rng.choice(f"cat{k}", i, CATEGORIES) for k in range(3)])
            .list.head(rng.below("n_cats", i, 4))
            .list.unique(maintain_order=True),
            preferences=pl.struct(
                channel=rng.choice("channel", i, CHANNELS),
                newsletter=rng.uniform("newsletter", i) < 0.5,
                since=pl.lit(dt.datetime(2024, 1, 1)) + pl.duration(days=rng.below("since", i, 700)),
            ),
        )
        .with_columns(pl.col("favorite_categories").cast(pl.List(pl.String)))
    )
    if day == 2:
        # The first 50 users carry the planted bad values (README.md): they are never absent.
        df = df.filter((i < 50) | (rng.uniform("absent", i) >= 0.02))
    return df.drop("i").collect()


def purchases(rng: Rng, n: int, day: int) -> pl.DataFrame:
    """Purchase history: day 2 holds all of day 1 again plus the new night's purchases."""
    history = _occurrences(rng, n, "purchase", 4, offset=0)
    if day == 2:
        history = pl.concat([history, _occurrences(rng, n + max(1, n // 20), "purchase2", 2, offset=10)])
    k, key = pl.col("k"), pl.col("i") * 64 + pl.col("k")
    product = rng.below("product", key, len(PRODUCTS))
    c = rng.below("country", pl.col("i"), len(COUNTRIES))
    fmt = rng.below("time_format", key, len(TIME_FORMATS))
    when = pl.col("time")
    return (
        history.lazy()
        .with_columns(
            purchase_id=pl.concat_str(
                pl.lit("P"), pl.col("external_id"), pl.lit("-"), k.cast(pl.String).str.zfill(2)
            ),
            product_id=product.replace_strict({j: p[0] for j, p in enumerate(PRODUCTS)}),
            currency=c.replace_strict({j: row[4] for j, row in enumerate(COUNTRIES)}),
            price=product.replace_strict({j: p[1] for j, p in enumerate(PRODUCTS)}),
            quantity=pl.when(rng.uniform("has_qty", key) < 0.6).then(1 + rng.below("qty", key, 3)),
            time=pl.when(fmt == 0)
            .then(when.dt.strftime(TIME_FORMATS[0]))
            .when(fmt == 1)
            .then(when.dt.strftime(TIME_FORMATS[1]))
            .otherwise(when.dt.strftime(TIME_FORMATS[2])),
            properties=rng.choice(
                "purchase_props",
                key,
                ['{"channel":"web"}', '{"channel":"app","coupon":"SPRING10"}', '{"gift":true}', None, None],
            ),
        )
        .select(
            "purchase_id", "external_id", "product_id", "currency", "price", "quantity", "time", "properties"
        )
        .collect()
    )


def events(rng: Rng, n: int, day: int) -> pl.DataFrame:
    """Custom events: day 2 holds all of day 1 again plus the new night's events."""
    history = _occurrences(rng, n, "event", 5, offset=0)
    if day == 2:
        history = pl.concat([history, _occurrences(rng, n + max(1, n // 20), "event2", 3, offset=10)])
    k, key = pl.col("k"), pl.col("i") * 64 + pl.col("k")
    has_props = rng.uniform("has_props", key) < 0.7
    return (
        history.lazy()
        .with_columns(
            event_id=pl.concat_str(
                pl.lit("E"), pl.col("external_id"), pl.lit("-"), k.cast(pl.String).str.zfill(2)
            ),
            name=rng.choice("event_name", key, EVENT_NAMES),
            time=pl.col("time").dt.strftime("%Y-%m-%dT%H:%M:%S%.3fZ"),
            properties=pl.when(has_props).then(
                pl.struct(
                    screen=rng.choice("screen", key, SCREENS),
                    item_count=pl.when(rng.uniform("has_items", key) < 0.5).then(rng.below("items", key, 9)),
                )
            ),
        )
        .select("event_id", "external_id", "name", "time", "properties")
        .collect()
    )


def push_tokens(rng: Rng, n: int, day: int) -> pl.DataFrame:
    """One token for ~70% of users; day 2 adds a second device for ~3% and tokens of new users."""
    total = n if day == 1 else n + max(1, n // 20)
    i = pl.col("i")
    base = pl.LazyFrame().select(
        pl.int_range(0, total, dtype=pl.Int64).alias("i"), pl.lit(0, pl.Int64).alias("d")
    )
    rows = base.filter(rng.uniform("has_token", i) < 0.7)
    if day == 2:
        rows = pl.concat(
            [rows, base.filter(rng.uniform("second_device", i) < 0.03).with_columns(d=pl.lit(1, pl.Int64))]
        )
    key = i * 4 + pl.col("d")
    device = pl.col("device")
    return (
        rows.with_columns(
            *rng.draws("token", key, 4),
            *rng.draws("device", key, 2),
            platform=rng.choice("platform", key, ["ios", "android"]),
        )
        .with_columns(
            hex=hex_text([f"token/{j}" for j in range(4)], 64), device=hex_text(["device/0", "device/1"], 32)
        )
        .select(
            external_id=_external_id(i, n),
            app_id=pl.col("platform").replace_strict(APPS),
            # APNs tokens are 64 hex digits; FCM registration tokens look like "<instance id>:APA91b<...>".
            token=pl.when(pl.col("platform") == "ios")
            .then(pl.col("hex"))
            .otherwise(
                pl.concat_str(pl.col("hex").str.slice(0, 22), pl.lit(":APA91b"), pl.col("hex").str.slice(22))
            ),
            device_id=pl.concat_str(
                device.str.slice(0, 8),
                pl.lit("-"),
                device.str.slice(8, 4),
                pl.lit("-"),
                device.str.slice(12, 4),
                pl.lit("-"),
                device.str.slice(16, 4),
                pl.lit("-"),
                device.str.slice(20, 12),
            ),
            platform=pl.col("platform"),
        )
        .collect()
    )


def _occurrences(rng: Rng, n: int, stream: str, most: int, offset: int) -> pl.DataFrame:
    """(external_id, i, k, time) for 0..most-1 occurrences per user, k counted from `offset`.

    Offset 0 is the year of history before day 1; other offsets fall in the night before day 2.
    """
    i = pl.col("i")
    start = SNAPSHOT_DAY1 - dt.timedelta(days=365) if offset == 0 else SNAPSHOT_DAY1
    span = 365 * 86400 if offset == 0 else 86400
    return (
        pl.LazyFrame()
        .select(pl.int_range(0, n, dtype=pl.Int64).alias("i"))
        .with_columns(pl.int_ranges(0, rng.below(f"n_{stream}", i, most), dtype=pl.Int64).alias("k"))
        .explode("k")
        .drop_nulls("k")
        .with_columns(
            k=pl.col("k") + offset,
            external_id=_external_id(i, n),
        )
        .with_columns(
            time=pl.lit(start) + pl.duration(seconds=rng.below(f"t_{stream}", i * 64 + pl.col("k"), span)),
        )
        .collect()
    )


def _external_id(i: pl.Expr, n: int) -> pl.Expr:
    """Zero-padded text ids ("000123"), one width for both nights of an n-user export."""
    return (i + 1).cast(pl.String).str.zfill(max(6, len(str(n + n // 20))))


# --- the committed samples: mixed formats, planted bad rows ----------------------------------------


def sample_frames(day: int, n: int = SAMPLE_USERS, seed: int = SAMPLE_SEED) -> dict[str, pl.DataFrame]:
    """The sample snapshot of `day` (1 or 2) with the bad rows of data/samples/README.md planted."""
    rng = Rng(seed)
    u = _plant_users(users(rng, n, day))
    p = _plant_purchases(_as_csv_text(purchases(rng, n, day)), day)
    e = _plant_events(events(rng, n, day))
    t = _plant_tokens(push_tokens(rng, n, day), day)
    return {"users": u, "purchases": p, "events": e, "push_tokens": t}


def write_samples(root: Path, n: int = SAMPLE_USERS, seed: int = SAMPLE_SEED) -> None:
    """Write `root`/day1 and `root`/day2 in the samples' layout (every format, single files and parts)."""
    for day in (1, 2):
        frames = sample_frames(day, n, seed)
        out = root / f"day{day}"
        _reset(out)
        if day == 1:
            frames["users"].write_parquet(out / "users.parquet")
        else:
            _write_parts(frames["users"], out / "users", "parquet")
        frames["purchases"].write_csv(out / "purchases.csv")
        frames["events"].write_ndjson(out / "events.ndjson")
        _write_parts(frames["push_tokens"], out / "push_tokens", "csv")


# --- the user-model example: nested objects, arrays of objects, subscription groups, deletes -------------


def user_model_frames(night: int) -> dict[str, list[dict]]:
    """Two nights of six users that show Braze's whole user model (README.md, "User model example"):
    nested objects with different keys per row, an array of objects by item id (`pets[id]`), subscription
    groups, nested event properties and, on night 2, erasures in `user_deletes`. Rows as JSON records."""
    pets = {
        "u1": [{"id": 1, "name": "Gus", "kind": "dog"}, {"id": 2, "name": "Gerald", "kind": "cat"}],
        "u2": [{"id": 1, "name": "Nemo", "kind": "fish"}, {"id": 2, "name": "Dory", "kind": "fish"}],
        "u3": [{"id": 10, "name": "Rex", "kind": "dog", "vet": {"city": "Oslo"}}],
        "u4": [], "u5": None, "u6": [{"id": 9, "name": "Tom", "kind": "cat"}],
    }
    books = {"u1": {"title": "Dune", "meta": {"year": 1965, "pages": 412}}, "u2": {"title": "Emma"},
             "u4": {"title": "Ulysses", "meta": {"year": 1922}}}
    groups = {"u1": [{"id": "news", "state": "subscribed"}], "u5": [{"id": "news", "state": "unsubscribed"},
                                                                 {"id": "offers", "state": "subscribed"}]}
    if night == 2:
        pets["u1"][0] = {**pets["u1"][0], "name": "Gussie"}               # one item changed: $update
        pets["u2"] = pets["u2"][:1]                                        # one item gone: $remove
        pets["u3"] = [*pets["u3"], {"id": 11, "name": "Bella", "kind": "dog"}]  # one item new: $add
        books["u4"] = {"title": "Ulysses", "meta": {"year": 1922, "pages": 730}}  # one key new: merged
        groups["u5"] = [{"id": "news", "state": "subscribed"}, {"id": "offers", "state": "subscribed"}]
    users = []
    for eid in ("u1", "u2", "u3", "u4", "u5", "u6"):
        row: dict = {"external_id": eid, "first_name": eid.upper()}
        if pets[eid] is not None:
            row["pets[id]"] = pets[eid]
        if eid in books:
            row["book"] = books[eid]
        if eid in groups:
            row["subscription_groups"] = groups[eid]
        users.append(row)
    users.append({"external_id": "u7", "pets[id]": [{"id": 1, "name": "A"}, {"id": 1, "name": "B"}]})  # ids repeat
    users.append({"external_id": "u8", "subscription_groups": [{"id": "news", "state": "maybe"}]})    # bad state
    events = [
        {"event_id": f"n{night}-e1", "external_id": "u1", "name": "viewed", "time": f"2026-11-0{night}T10:00:00Z",
         "properties": {"item": {"sku": "s1", "tags": ["a"]}}},
        {"event_id": f"n{night}-e2", "external_id": "u2", "name": "viewed", "time": f"2026-11-0{night}T11:00:00Z",
         "properties": {"item": {"sku": "s2", "price": {"amount": 3.5, "currency": "EUR"}}}},
    ]
    out = {"users": users, "events": events}
    if night == 2:
        out["user_deletes"] = [{"external_id": "u6", "reason": "gdpr erasure"},
                               {"external_id": "", "reason": "blank id: rejected"}]
    return out


def write_user_model(root: Path) -> None:
    """Write `root`/user_model/night1 and night2 (NDJSON users and events, CSV user_deletes)."""
    for night in (1, 2):
        out = root / "user_model" / f"night{night}"
        _reset(out)
        for name, rows in user_model_frames(night).items():
            if name == "user_deletes":
                pl.DataFrame(rows).write_csv(out / "user_deletes.csv")
            else:
                (out / f"{name}.ndjson").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


# --- the shop example: orders as eCommerce events and a product catalog --------------------------------


SHOP_PRODUCTS = [  # id, title, price, in_stock, released
    (f"sku-{i:03d}", f"Product {i:03d}", round(4.5 + 3.25 * i, 2), i % 4 != 0, f"2026-0{1 + i % 9}-1{i % 10}T09:00:00Z")
    for i in range(1, 21)
]


def shop_frames(night: int) -> dict[str, pl.DataFrame]:
    """Two nights of a shop (README.md, "Shop example"): `purchases` as lines of orders (with
    `--purchases-as ecommerce`), `order_refunds` on night 2, and the catalog `catalogs/products`: night 2
    changes one item, adds one and drops one."""
    lines = []
    for o in range(1, 9):
        for k in range(1 + o % 3):  # orders of 1 to 3 lines
            pid, title, price, _, _ = SHOP_PRODUCTS[(o * 3 + k) % len(SHOP_PRODUCTS)]
            lines.append({"order_id": f"ord-{o:03d}", "external_id": f"u{o % 5 + 1}", "product_id": pid,
                          "product_name": title, "variant_id": f"{pid}-std", "quantity": 1 + k, "price": price,
                          "currency": "EUR", "time": f"2026-11-0{1 + o % 2}T1{o}:00:00Z", "cart_id": f"cart-{o:03d}",
                          "tax": round(price * 0.2, 2) if k == 0 else None, "source": "web"})
    lines[-1] = {**lines[-1], "price": -1.0}  # the last order breaks Braze's schema: rejected, never sent
    out = {"purchases": pl.DataFrame(lines)}
    products = list(SHOP_PRODUCTS)
    if night == 2:
        products[2] = (products[2][0], products[2][1] + " (new edition)", products[2][2], products[2][3], products[2][4])
        products.pop(7)
        products.append(("sku-021", "Product 021", 72.75, True, "2026-11-02T09:00:00Z"))
        out["order_refunds"] = pl.DataFrame([{**lines[0], "refund_id": "ref-001"}]).drop("cart_id", "tax")
    out["catalogs/products"] = pl.DataFrame(products, schema=["id", "title", "price", "in_stock", "released"],
                                            orient="row")
    return out


def write_shop(root: Path) -> None:
    """Write `root`/shop/night1 and night2 (CSV purchases and refunds, the catalog as CSV)."""
    for night in (1, 2):
        out = root / "shop" / f"night{night}"
        _reset(out)
        (out / "catalogs").mkdir()
        for name, df in shop_frames(night).items():
            df.write_csv(out / f"{name}.csv")


# --- the identity example: users known by alias, email or phone only (docs/identity.md) -------------------


def identity_frames(night: int) -> dict[str, list[dict]]:
    """Three nights of users identified every way Braze allows: 20 by external_id (`c1`…), 12 by a user alias
    (`dev-1`… with label `legacy_id`), 3 by email only, 3 by phone only, rows with several identifiers
    (precedence) and rows whose only identifier is invalid; events and purchases name users the same ways.
    Night 2 changes one attribute of one user of each kind, identifies `dev-1`…`dev-10` (the first five as new
    external ids `m1`…, the next five into the existing `c16`…`c20`) and renames `c1`…`c10` to `k1`…; night 3
    names those users by their new ids and changes the tier of `k1` and `m1` only. Rows as JSON records."""
    tier = {1: "bronze", 2: "silver", 3: "silver"}[night]
    identified = {f"dev-{i}": (f"m{i}" if i <= 5 else f"c{i + 10}") for i in range(1, 11)}
    renamed = {f"c{i}": f"k{i}" for i in range(1, 11)}

    def now(key: str, changed: bool) -> str:
        return (tier if changed else "bronze") if night < 3 or key not in ("c1", "dev-1") else "gold"

    users: list[dict] = []
    for i in range(1, 21):
        eid = f"c{i}"
        users.append({"external_id": renamed.get(eid, eid) if night == 3 else eid, "first_name": f"Cid{i}",
                      "tier": now(eid, i == 1)})
    for i in range(1, 13):
        alias = f"dev-{i}"
        row = {"alias_name": alias, "alias_label": "legacy_id", "first_name": f"Ali{i}", "tier": now(alias, i == 1)}
        if night == 3 and alias in identified:
            if i > 5:
                continue  # merged into c16…c20: the warehouse knows them by that id now
            row["external_id"] = identified[alias]  # several identifiers: external_id names the user
        users.append(row)
    for i in range(1, 4):
        users.append({"email": f"lead{i}@example.com", "first_name": f"Em{i}", "tier": tier if i == 1 else "bronze"})
        users.append({"phone": f"+4930123456{i}", "first_name": f"Ph{i}", "tier": tier if i == 1 else "bronze"})
    users.append({"external_id": "c99", "email": "c99@example.com", "first_name": "Both"})   # external_id wins
    users.append({"alias_name": "dev-99", "alias_label": "legacy_id", "email": "dev99@example.com"})  # alias wins
    users.append({"email": "not-an-address", "first_name": "Bad"})                       # rejected: bad email
    users.append({"phone": "030 1234567", "first_name": "Bad"})                         # rejected: not E.164
    users.append({"alias_name": "dev-half", "first_name": "Bad"})                       # rejected: half an alias
    who = [{"external_id": "k1" if night == 3 else "c1"},
           {"external_id": "m1"} if night == 3 else {"alias_name": "dev-1", "alias_label": "legacy_id"},
           {"email": "lead1@example.com"}, {"phone": "+49301234561"}]
    events = [{"event_id": f"n{night}-e{k}", **w, "name": "visited", "time": f"2026-11-0{night}T10:0{k}:00Z"}
              for k, w in enumerate(who)]
    purchases = [{"purchase_id": f"n{night}-p{k}", **w, "product_id": "sku-1", "currency": "EUR", "price": 9.5,
                  "time": f"2026-11-0{night}T11:0{k}:00Z"} for k, w in enumerate(who)]
    out = {"users": users, "events": events, "purchases": purchases}
    if night == 2:
        out["identifies"] = [{"alias_name": a, "alias_label": "legacy_id", "external_id": e}
                             for a, e in identified.items()]
        out["external_id_renames"] = [{"current_external_id": c, "new_external_id": n} for c, n in renamed.items()]
    return out


def write_identity(root: Path) -> None:
    """Write `root`/identity/night1, night2 and night3 (NDJSON)."""
    for night in (1, 2, 3):
        out = root / "identity" / f"night{night}"
        _reset(out)
        for name, rows in identity_frames(night).items():
            (out / f"{name}.ndjson").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def write_benchmark(root: Path, n: int, fmt: str, seed: int) -> None:
    """Write clean `root`/day1 and `root`/day2 exports, every dataset one file in `fmt`."""
    rng = Rng(seed)
    for day in (1, 2):
        out = root / f"day{day}"
        _reset(out)
        frames = {
            "users": users(rng, n, day),
            "purchases": purchases(rng, n, day),
            "events": events(rng, n, day),
            "push_tokens": push_tokens(rng, n, day),
        }
        for name, df in frames.items():
            _write(df, out / f"{name}.{fmt}", fmt)


def _plant_users(df: pl.DataFrame) -> pl.DataFrame:
    cells = {
        "000007": {"email": "not-an-email"},
        "000011": {"gender": "X"},
        "000013": {"country": "XX"},
        "000017": {"language": "english"},
        "000019": {"dob": "1990-02-30"},
        "000023": {"phone": "12-34"},
        "000029": {"email_subscribe": "yes"},
        "000031": {"loyalty_tier": "platinum " + "*" * 300},
        "000037": {"lifetime_value": float("nan")},
    }
    for eid, values in cells.items():
        df = df.with_columns(
            [
                pl.when(pl.col("external_id") == eid).then(pl.lit(v)).otherwise(pl.col(c)).alias(c)
                for c, v in values.items()
            ]
        )

    def row(eid: str, **values) -> pl.DataFrame:
        copy = df.filter(pl.col("external_id") == eid)
        return copy.with_columns([pl.lit(v, dtype=df.schema[c]).alias(c) for c, v in values.items()])

    template = df.head(1)
    extra = [
        # No external_id and an email that is no address: nothing identifies the row (docs/identity.md).
        template.with_columns(external_id=pl.lit(None, pl.String), email=pl.lit("orphan.example.com"),
                              phone=pl.lit(None, pl.String)),
        template.with_columns(external_id=pl.lit("9" * 1000)),
        row("000042", updated_at=dt.datetime(2026, 11, 20), loyalty_tier="gold"),
        row("000042", updated_at=dt.datetime(2026, 11, 10), loyalty_tier="silver"),
        row("000043", loyalty_tier="platinum"),
    ]
    df = df.with_columns(
        pl.when(pl.col("external_id") == "000042")
        .then(pl.lit(dt.datetime(2026, 11, 1)))
        .otherwise("updated_at")
        .alias("updated_at")
    )
    out = pl.concat([df, *extra])
    return out.with_columns((pl.int_range(pl.len()) % 97).alias("$legacy_score"))


def _plant_purchases(df: pl.DataFrame, day: int) -> pl.DataFrame:
    good = dict(zip(df.columns, df.row(0)))
    many = json.dumps({f"k{j:03d}": j for j in range(257)})

    def bad(pid: str, **kw) -> dict:
        return {**good, "purchase_id": pid, **kw}

    if day == 2:
        # A purchase corrected in the warehouse after day 1: same purchase_id, another price.
        df = df.with_columns(
            pl.when(pl.int_range(pl.len()) == 2).then(pl.lit("1.00")).otherwise("price").alias("price")
        )
    rows = [
        bad("PX-CURRENCY", currency="ABC"),
        bad("PX-LOWERCASE", currency="usd"),
        bad("PX-QTY0", quantity="0"),
        bad("PX-QTY101", quantity="101"),
        bad("PX-NOTIME", time=None),
        bad("PX-BADTIME", time="yesterday"),
        bad("PX-NEGATIVE", price="-5.00"),
        bad("PX-PRICETEXT", price="12,50"),
        bad("PX-BADJSON", properties="{oops"),
        bad("PX-NOTOBJECT", properties="[1, 2]"),
        bad("PX-RESERVED", properties='{"price": 1}'),
        bad("PX-DOLLARKEY", properties='{"$source": "crm"}'),
        bad("PX-MANYKEYS", properties=many),
        bad("PX-LONGPRODUCT", product_id="sku-" + "x" * 300),
        bad("PX-NOUSER", external_id=None),
        bad(None),
        dict(zip(df.columns, df.row(1))),
    ]
    return pl.concat([df, pl.DataFrame(rows, schema=df.schema)])


def _plant_events(df: pl.DataFrame) -> pl.DataFrame:
    good = dict(zip(df.columns, df.row(0)))

    def bad(eid: str, **kw) -> dict:
        return {**good, "event_id": eid, **kw}

    rows = [
        bad("EX-NOTIME", time=None),
        bad("EX-NONAME", name=""),
        bad("EX-LONGNAME", name="viewed_" + "x" * 300),
        bad("EX-OFFSET", time="2026-11-20T10:00:00+02:00"),
        bad("EX-NOUSER", external_id=None),
        bad("EX-RESERVED", properties={"screen": "home", "time": "2026-11-20T10:00:00Z"}),
        bad("EX-DOLLARKEY", properties={"screen": "home", "$source": "crm"}),
        dict(zip(df.columns, df.row(1))),
    ]
    extra = pl.DataFrame(rows, infer_schema_length=None)
    return pl.concat([df, extra], how="diagonal_relaxed")


def _plant_tokens(df: pl.DataFrame, day: int) -> pl.DataFrame:
    first, second = df.row(0, named=True), df.row(1, named=True)
    if day == 2:
        df = df.with_columns(
            pl.when(pl.col("token") == second["token"])
            .then(pl.lit(MOVED_TO))
            .otherwise("external_id")
            .alias("external_id")
        )
    rows = [
        {**first, "external_id": "000002"},
        {
            "external_id": "000003",
            "app_id": APPS["ios"],
            "token": "web-push-endpoint-0001",
            "platform": "web",
        },
        {
            "external_id": None,
            "app_id": APPS["android"],
            "token": "fcm:anonymous-device-0001",
            "platform": "android",
        },
        {
            "external_id": "000005",
            "app_id": APPS["android"],
            "token": "fcm:short-device-id-0001",
            "device_id": "abc",
            "platform": "android",
        },
        {"external_id": "000006", "app_id": None, "token": "fcm:no-app-id-0001", "platform": "android"},
        {"external_id": "000008", "app_id": APPS["ios"], "token": None, "platform": "ios"},
        {
            "external_id": "000009",
            "app_id": APPS["ios"],
            "token": "apns-blackberry-0001",
            "platform": "blackberry",
        },
    ]
    return pl.concat([df, pl.DataFrame(rows, schema=df.schema)])


def _as_csv_text(df: pl.DataFrame) -> pl.DataFrame:
    return df.with_columns(pl.col("price").cast(pl.String), pl.col("quantity").cast(pl.String))


def _write_parts(df: pl.DataFrame, folder: Path, fmt: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    half = df.height // 2
    _write(df.head(half), folder / f"part-0001.{fmt}", fmt)
    _write(df.slice(half), folder / f"part-0002.{fmt}", fmt)


def _write(df: pl.DataFrame, path: Path, fmt: str) -> None:
    if fmt == "parquet":
        df.write_parquet(path)
    elif fmt == "ndjson":
        df.write_ndjson(path)
    else:
        nested = [c for c, t in df.schema.items() if isinstance(t, (pl.List, pl.Struct))]
        df.with_columns(
            [
                pl.when(pl.col(c).is_not_null())
                .then(pl.struct(pl.col(c).alias("v")).struct.json_encode().str.slice(5).str.strip_suffix("}"))
                .alias(c)
                for c in nested
            ]
        ).write_csv(path)


def _reset(folder: Path) -> None:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, help="users in day 1 (benchmark mode)")
    parser.add_argument("--out", type=Path, help="output folder; day1/ and day2/ are written inside")
    parser.add_argument("--format", choices=["parquet", "csv", "ndjson"], default="parquet")
    parser.add_argument("--seed", type=int, default=SAMPLE_SEED)
    args = parser.parse_args(argv)
    if args.users is None and args.out is None:
        write_samples(Path(__file__).resolve().parent)
        write_user_model(Path(__file__).resolve().parent)
        write_shop(Path(__file__).resolve().parent)
        write_identity(Path(__file__).resolve().parent)
        return
    if args.out is None:
        parser.error("--out is required with --users")
    write_benchmark(args.out, args.users or SAMPLE_USERS, args.format, args.seed)


if __name__ == "__main__":
    main()
