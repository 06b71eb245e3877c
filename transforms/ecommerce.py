"""Purchase rows as Braze's eCommerce recommended events: one `ecommerce.order_placed` (or `order_refunded`,
`order_cancelled`) event per order, its rows the order's `products`, validated before sending (pure, lazy).

Schema: https://www.braze.com/docs/user_guide/data/activation/events/recommended_events/ ("Event schemas",
"Event validation and troubleshooting"). Required: `order_id`, `total_value`, `currency`, `products` (each
with `product_id`, `product_name`, `variant_id`, `quantity`, `price`) and `source`; `cancel_reason` for a
cancellation. Optional: `cart_id` (placed only), `subtotal_value`, `tax`, `shipping` (not on a refund),
`total_discounts`, `discounts`, `metadata`; per product `image_url`, `product_url`, `metadata`. Monetary
fields are >= 0, `currency` is ISO 4217, nothing else may sit at the top level. Braze drops an invalid
event (the API reports it in `errors[]`), so an order that would break the schema is rejected here, with
its reason, and never sent.

One row is one line of an order. Order-level columns (`external_id`, `currency`, `time`, totals, `cart_id`,
`source`, `metadata`, ...) are read from the order's first row that has them; rows of one order that
disagree on the user, the currency or the time reject the order. Without a `total_value` column the total is
the sum of price x quantity of its lines. The order is the unit a run counts (read, acknowledged, rejected):
`good` holds one row per order, the rejects one row per rejected order (at its first line, naming the
failing line) and one per row without an order id.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl
import polars_hash as plh

from transforms.csv_typing import blank_to_null
from transforms.currencies import ISO_4217
from transforms.jsontext import ISO_MS, OBJECT_DTYPE, json_text, object_from_struct, object_from_text
from transforms.normalize import (
    MAX_EXTERNAL_ID_BYTES,
    MAX_STRING,
    Check,
    Normalized,
    _as_float,
    _as_int,
    _as_text,
    _as_utc,
    _check_columns,
    _first_failure,
    _present,
    _rejects_frame,
)

EVENTS = {"orders": "ecommerce.order_placed", "order_refunds": "ecommerce.order_refunded",
          "order_cancellations": "ecommerce.order_cancelled"}
DATASETS = tuple(EVENTS)
SOURCE_DATASET = {"orders": "purchases", "order_refunds": "order_refunds",
                  "order_cancellations": "order_cancellations"}  # the export dataset each is read from
LINE_COLUMNS = ("product_id", "product_name", "variant_id")
REQUIRED = ("order_id", "external_id", *LINE_COLUMNS, "currency", "price", "time")
MONEY = ("total_value", "subtotal_value", "tax", "shipping", "total_discounts")
# Order-level optional fields each event takes (the schema tables), beyond the required ones.
OPTIONAL = {
    "orders": ("cart_id", "subtotal_value", "tax", "shipping", "total_discounts", "discounts", "metadata"),
    "order_cancellations": ("subtotal_value", "tax", "shipping", "total_discounts", "discounts", "metadata"),
    "order_refunds": ("total_discounts", "discounts", "metadata"),
}
MAX_PROPERTIES_BYTES = 50 * 1024  # properties holding arrays or objects (Braze's custom event limit)
DISCOUNT = pl.List(pl.Struct({"code": pl.String, "amount": pl.Float64, "type": pl.String}))

NO_ORDER_ID = "the order id is missing or not text: the row belongs to no order"
CONFLICT = "rows of this order disagree on {}: one order has one user, currency and time"
TOO_LARGE = "the order's properties are over 50 KB; Braze rejects such an event"


def order_key(dataset: str, schema: pl.Schema) -> str:
    """The column an eCommerce dataset is grouped and acknowledged by: `order_id`, or `refund_id` for refunds
    when the export has it (several partial refunds of one order are several events)."""
    return "refund_id" if dataset == "order_refunds" and "refund_id" in schema else "order_id"


def key_text(frame: pl.LazyFrame, dataset: str) -> pl.Expr:
    """The key of each raw row as normalization computes it (for partitioning: an order's rows stay together)."""
    schema = frame.collect_schema()
    key = order_key(dataset, schema)
    return _as_text(key, schema[key]) if key in schema else pl.lit(None, pl.String)


def normalize_orders(lf: pl.LazyFrame, *, dataset: str = "orders", source: str = "warehouse",
                     files: Sequence[str] = ()) -> Normalized:
    """Valid orders of `dataset` (one row each: key, external_id, _file, _row, object, fingerprint,
    data_points) and the rejects; `source` is the event's `source` where a row gives none."""
    schema = lf.collect_schema()
    key = order_key(dataset, schema)
    required = (*REQUIRED, "cancel_reason") if dataset == "order_cancellations" else REQUIRED
    if key != "order_id":
        required = (key, *required)
    _check_columns(lf, SOURCE_DATASET[dataset], required, files)
    lines = lf.with_columns(_typed(schema, key, source)).with_columns(_first_failure(_line_checks(schema)).alias("__fail"))
    no_key = pl.col("__key").is_null()
    orders = lines.filter(~no_key).sort("__key", "_file", "_row").group_by("__key", maintain_order=True).agg(
        _order_fields(schema, dataset, key))
    orders = orders.with_columns(_order_reason().alias("__reason"))
    props = _properties(dataset)
    event = pl.concat_str(
        pl.lit('{"external_id":'), json_text(pl.col("__external_id")),
        pl.lit(f',"name":"{EVENTS[dataset]}","time":"'), pl.col("__time").dt.strftime(ISO_MS),
        pl.lit('","properties":'), props, pl.lit("}"),
    )
    built = orders.with_columns(__props=props, __n_keys=n_keys(dataset)).with_columns(
        pl.when(pl.col("__reason").is_null() & (pl.col("__props").str.len_bytes() > MAX_PROPERTIES_BYTES))
        .then(pl.lit(TOO_LARGE)).otherwise(pl.col("__reason")).alias("__reason"))
    good = (
        built.filter(pl.col("__reason").is_null())
        .select(pl.col("__key").alias(key), pl.col("__external_id").alias("external_id"), "_file", "_row",
                event.alias("object"), (1 + pl.col("__n_keys")).cast(pl.Int64).alias("data_points"))
        .with_columns(plh.col("object").nchash.xxh3_64().alias("fingerprint"))
        .select(key, "external_id", "_file", "_row", "object", "fingerprint", "data_points")
    )
    rejected_orders = _rejects_frame(built.filter(pl.col("__reason").is_not_null()), dataset, pl.col("__key"),
                                     None, None, pl.col("__reason"))
    keyless = _rejects_frame(lines.filter(no_key), dataset, pl.lit(None, pl.String), None, None, pl.lit(NO_ORDER_ID))
    rejects = pl.concat([keyless, rejected_orders], how="vertical").sort(["file", "row"])
    return Normalized(good, rejects)


def _typed(schema: pl.Schema, key: str, source: str) -> list[pl.Expr]:
    def text(name: str) -> pl.Expr:
        return _as_text(name, schema[name]) if name in schema else pl.lit(None, pl.String)

    def number(name: str) -> pl.Expr:
        return _as_float(name, schema[name]) if name in schema else pl.lit(None, pl.Float64)

    out = [text(key).alias("__key"), text("order_id").alias("__order_id"), text("external_id").alias("__external_id"),
           *(text(c).alias(f"__{c}") for c in (*LINE_COLUMNS, "image_url", "product_url", "cart_id", "cancel_reason")),
           text("currency").str.to_uppercase().alias("__currency"),
           pl.coalesce(text("source"), pl.lit(source)).alias("__source"),
           number("price").alias("__price"),
           (_as_int("quantity", schema["quantity"]) if "quantity" in schema else pl.lit(None, pl.Int64)).alias("__qty"),
           _as_utc("time", schema["time"]).alias("__time"),
           _json_object("properties", schema).alias("__meta"), _json_object("metadata", schema).alias("__order_meta"),
           _discounts(schema).alias("__discounts"),
           *(number(c).alias(f"__{c}") for c in MONEY)]
    return out


def _line_checks(schema: pl.Schema) -> list[Check]:
    """Checks of one row as a line of its order; the first one failed is the order's reason."""
    def present(name: str) -> pl.Expr:
        return _present(name, schema[name]) if name in schema else pl.lit(False)

    checks = [Check(pl.col("__order_id").is_null(), "order_id is missing or not text", "order_id"),
              Check(pl.col("__external_id").is_null(), "external_id is missing or not text"),
              Check(pl.col("__external_id").str.len_bytes() > MAX_EXTERNAL_ID_BYTES,
                    f"external_id longer than {MAX_EXTERNAL_ID_BYTES} bytes")]
    for c in LINE_COLUMNS:
        checks += [Check(pl.col(f"__{c}").is_null(), f"{c} is missing or not text", c),
                   Check(pl.col(f"__{c}").str.len_chars() > MAX_STRING, f"{c} longer than {MAX_STRING} characters", c)]
    price = pl.col("__price")
    checks += [
        Check(price.is_null() | ~price.is_finite(), "price is missing or not a number", "price"),
        Check(price < 0, "price is negative", "price"),
        Check(present("quantity") & ~pl.col("__qty").is_between(1, 10**9).fill_null(False),
              "quantity is not a whole number of at least 1", "quantity"),
        Check(~pl.col("__currency").is_in(sorted(ISO_4217)).fill_null(False), "currency is not an ISO 4217 code",
              "currency"),
        Check(pl.col("__time").is_null(), "time is missing or not an ISO 8601 date/time", "time"),
        Check(pl.col("__meta").struct.field("error").is_not_null(),
              pl.lit("properties (the product's metadata): ") + pl.col("__meta").struct.field("error")),
        Check(pl.col("__order_meta").struct.field("error").is_not_null(),
              pl.lit("metadata: ") + pl.col("__order_meta").struct.field("error")),
        Check(present("discounts") & pl.col("__discounts").is_null(),
              "discounts is not a list of {code, amount, type} objects", "discounts"),
    ]
    for c in MONEY:
        value = pl.col(f"__{c}")
        checks += [Check(present(c) & (value.is_null() | ~value.is_finite().fill_null(False)), f"{c} is not a number", c),
                   Check(value < 0, f"{c} is negative; Braze takes amounts >= 0", c)]
    return checks


def _order_fields(schema: pl.Schema, dataset: str, key: str) -> list[pl.Expr]:
    """Per order: its first row's origin, the first failing line, order-level values and the products."""
    def first(name: str) -> pl.Expr:
        return pl.col(name).drop_nulls().first()

    failed = pl.col("__fail").is_not_null()
    line = pl.concat_str(
        pl.lit('{"product_id":'), json_text(pl.col("__product_id")),
        pl.lit(',"product_name":'), json_text(pl.col("__product_name")),
        pl.lit(',"variant_id":'), json_text(pl.col("__variant_id")),
        pl.lit(',"quantity":'), pl.col("__qty").fill_null(1).cast(pl.String),
        pl.lit(',"price":'), json_text(pl.col("__price")),
        pl.when(pl.col("__image_url").is_not_null()).then(pl.lit(',"image_url":') + json_text(pl.col("__image_url"))),
        pl.when(pl.col("__product_url").is_not_null()).then(pl.lit(',"product_url":') + json_text(pl.col("__product_url"))),
        pl.when(pl.col("__meta").struct.field("json").is_not_null())
        .then(pl.lit(',"metadata":') + pl.col("__meta").struct.field("json")),
        pl.lit("}"), ignore_nulls=True,
    )
    reasons = _line_reasons(_line_checks(schema))
    return [
        pl.col("_file").first(), pl.col("_row").first(), pl.len().alias("__lines"),
        pl.col("__external_id").n_unique().alias("__n_users"), pl.col("__currency").n_unique().alias("__n_currencies"),
        pl.col("__time").n_unique().alias("__n_times"),
        reasons.filter(failed).first().alias("__line_reason"), pl.col("_row").filter(failed).first().alias("__bad_row"),
        *(first(f"__{c}") for c in ("order_id", "external_id", "currency", "time", "source", "cart_id", "cancel_reason",
                                    "subtotal_value", "tax", "shipping", "total_discounts", "discounts")),
        first("__order_meta"),
        pl.coalesce(first("__total_value"), (pl.col("__price") * pl.col("__qty").fill_null(1)).sum().round(6))
        .alias("__total_value"),
        pl.concat_str(pl.lit("["), line.str.join(","), pl.lit("]")).alias("__products"),
    ]


def _line_reasons(checks: list[Check]) -> pl.Expr:
    reason = None
    for i, c in enumerate(checks):
        r = c.reason if isinstance(c.reason, pl.Expr) else pl.lit(c.reason)
        reason = (pl.when(pl.col("__fail") == i) if reason is None else reason.when(pl.col("__fail") == i)).then(r)
    return reason.cast(pl.String)


def _order_reason() -> pl.Expr:
    lines = pl.col("__lines").cast(pl.String)
    return (
        pl.when(pl.col("__line_reason").is_not_null())
        .then(pl.format("order of {} line(s) not sent: row {}: {}", lines, pl.col("__bad_row"), pl.col("__line_reason")))
        .when(pl.col("__n_users") > 1).then(pl.lit(CONFLICT.format("external_id")))
        .when(pl.col("__n_currencies") > 1).then(pl.lit(CONFLICT.format("currency")))
        .when(pl.col("__n_times") > 1).then(pl.lit(CONFLICT.format("time")))
    )


def _properties(dataset: str) -> pl.Expr:
    """The event's properties as JSON text, keys in the order of Braze's schema table, absent ones left out."""
    def field(name: str, value: pl.Expr) -> pl.Expr:
        return pl.when(value.is_not_null()).then(pl.lit(f',"{name}":') + value)

    optional = OPTIONAL[dataset]
    pieces = [pl.lit('{"order_id":'), json_text(pl.col("__order_id"))]
    if "cart_id" in optional:
        pieces.append(field("cart_id", json_text(pl.col("__cart_id"))))
    pieces.append(pl.lit(',"total_value":') + json_text(pl.col("__total_value")))
    for name in ("subtotal_value", "tax", "shipping"):
        if name in optional:
            pieces.append(field(name, json_text(pl.col(f"__{name}"))))
    pieces.append(pl.lit(',"currency":"') + pl.col("__currency") + pl.lit('"'))
    pieces += [field("total_discounts", json_text(pl.col("__total_discounts"))),
               field("discounts", pl.col("__discounts")),
               pl.lit(',"products":') + pl.col("__products"),
               pl.lit(',"source":') + json_text(pl.col("__source"))]
    if dataset == "order_cancellations":
        pieces.append(pl.lit(',"cancel_reason":') + json_text(pl.col("__cancel_reason")))
    pieces += [field("metadata", pl.col("__order_meta").struct.field("json")), pl.lit("}")]
    return pl.concat_str(pieces, ignore_nulls=True)


def n_keys(dataset: str) -> pl.Expr:
    """Top-level properties of the event: each is one data point (as for any custom event)."""
    present = [pl.col(f"__{c}").is_not_null() for c in OPTIONAL[dataset] if c != "metadata"]
    present.append(pl.col("__order_meta").struct.field("json").is_not_null())
    fixed = 6 if dataset == "order_cancellations" else 5  # order_id, total_value, currency, products, source (+reason)
    return fixed + pl.sum_horizontal([p.cast(pl.Int64) for p in present])


def _json_object(name: str, schema: pl.Schema) -> pl.Expr:
    """A metadata column (a struct, or JSON object text) as {json, n_keys, error}; absent: null."""
    dtype = schema.get(name)
    if dtype is None or dtype == pl.Null:
        return pl.lit(None, dtype=OBJECT_DTYPE)
    if isinstance(dtype, pl.Struct):
        return object_from_struct(pl.col(name), dtype, ())
    if dtype == pl.String:
        return object_from_text(blank_to_null(pl.col(name)), ())
    return pl.when(pl.col(name).is_not_null()).then(
        pl.struct(json=pl.lit(None, pl.String), n_keys=pl.lit(None, pl.Int64), error=pl.lit("not a JSON object")))


def _discounts(schema: pl.Schema) -> pl.Expr:
    """`discounts` (a list of {code, amount, type}, or its JSON text) as compact JSON; null when absent or bad."""
    dtype = schema.get("discounts")
    if dtype is None or dtype == pl.Null:
        return pl.lit(None, pl.String)
    col = pl.col("discounts")
    if dtype == pl.String:
        text = blank_to_null(col)
        decoded = pl.when(text.str.starts_with("[")).then(text).str.json_decode(DISCOUNT)
        return json_text(decoded)
    if isinstance(dtype, pl.List) and isinstance(dtype.inner, pl.Struct):
        return json_text(col.cast(DISCOUNT, strict=False))
    return pl.lit(None, pl.String)
