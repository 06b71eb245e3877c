"""Deltas against what Braze acknowledged: pure lazy Polars, no I/O.

Every good row of tonight's export leaves here either as an object to send or as a kept row with its
bucket (`unchanged`, `rejected`, `pending`) and reason, so the run summary can account for every row.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import msgspec
import polars as pl
import polars_hash  # noqa: F401  (registers the stable `.nchash` namespace)

from transforms import identity, nested

# Writing these is free (braze-api.md, "Data points"); everything else costs one point per attribute written.
NOT_BILLABLE = frozenset({"email_subscribe", "push_subscribe", "subscription_groups"})

OBJECT_COLUMNS = ["dataset", "array", "key", "external_id", "object", "fingerprint", "data_points", "_file", "_row"]
KEPT_COLUMNS = ["dataset", "key", "bucket", "reason", "_file", "_row"]
_OLD = "\x00old:"
_NOW = "\x00now:"
_CH = "\x00change:"
_CHANGED = "\x00changed:"
DELETED = (
    "user was deleted from Braze on behalf of user_deletes: not loaded again, whatever later exports hold "
    "(erasure is permanent; `braze-migrate undelete ID` lets the user be loaded again)"
)
MALFORMED = (
    "internal error: the object built for this row is not well-formed JSON; held, not sent "
    "(the rest of the run goes on; please report this bug)"
)


@dataclass(frozen=True)
class Delta:
    """What to send (`send`, OBJECT_COLUMNS), what not and why (`kept`, KEPT_COLUMNS), and for users the
    snapshot rows to store once Braze acknowledges their object (`next_rows`)."""

    send: pl.LazyFrame
    kept: pl.LazyFrame
    next_rows: pl.LazyFrame | None = None
    cleared: pl.LazyFrame | None = None  # users: external_id, `cleared` (values written as null tonight)


def json_text(expr: pl.Expr) -> pl.Expr:
    """The JSON encoding of a scalar column, as text (`"a\\"b"`, `12`, `null`).

    The wrapper `{"v":` … `}` is stripped as text, never cut at a byte count: a character position and a
    byte length disagree as soon as a value holds non-ASCII text (issue 13).
    """
    encoded = pl.struct(expr.alias("v")).struct.json_encode()
    return encoded.str.strip_prefix('{"v":').str.strip_suffix("}")


def is_json(text: pl.Expr) -> pl.Expr:
    """True where `text` is one well-formed JSON document (false for null).

    msgspec's validating decoder, asked for the raw text back (`msgspec.Raw`), checks each document without
    building its values: about 2.5x faster than Polars' own JSON path matcher on 600-byte objects (and 5x
    faster than asking that matcher for the whole document back), docs/performance.md."""
    return text.map_batches(_valid_json, return_dtype=pl.Boolean, is_elementwise=True)


_RAW = msgspec.json.Decoder(msgspec.Raw)


def _valid_json(texts: pl.Series) -> pl.Series:
    def valid(value: str | None) -> bool:
        if value is None:
            return False
        try:
            _RAW.decode(value)
        except msgspec.DecodeError:
            return False
        return True

    return pl.Series(texts.name, [valid(v) for v in texts.to_list()], dtype=pl.Boolean)


def deleted_users(held: pl.LazyFrame) -> pl.LazyFrame:
    """external_ids Braze deleted on behalf of the export's `user_deletes` (held rows of that dataset, kept by
    braze_migrate/ops/deletes.py while the id stays listed): none of their rows is sent."""
    return held.filter(pl.col("dataset") == "user_deletes").select(
        pl.col("key").alias("external_id"), pl.lit(True).alias("_deleted")).unique("external_id")


def _xxh3(expr: pl.Expr) -> pl.Expr:
    """A hash stable across Polars versions (polars-hash xxh3_64), safe to store."""
    return expr.nchash.xxh3_64()


def _attribute_columns(schema: pl.Schema) -> list[str]:
    return [c for c in schema.names() if c != "external_id" and not c.startswith("_")]


def diff_users(tonight: pl.LazyFrame, snapshot: pl.LazyFrame, held: pl.LazyFrame, *,
               snapshot_empty: bool = False, eager: bool = False, create_aliases: bool = False) -> Delta:
    """Column-level diff of normalized users against the acknowledged snapshot.

    A changed value is sent, an unchanged one is not, a value that became empty is sent as `null`,
    a cell dropped as invalid (`_dropped`) keeps its acknowledged value, a column absent tonight is left
    alone, and a user absent tonight is not touched. An attributes object that Braze rejected before is not
    sent again until it changes.

    `snapshot_empty` (the caller knows `snapshot` has no row: a first load): a nested object then has no
    key-level change to compute, it is sent whole, and its cost is counted in Polars rather than per value in
    Python (the same figures: tests/test_deltas.py). `eager`: compute the users' objects now, in memory (for a
    caller that holds one partition), so the three outputs do not each compute them again.
    `create_aliases`: an alias user's object may create the user (transforms/identity.py `fragment`).

    A user keyed by email (or phone) is named by that field: when the field itself is sent it is the
    identifier, and it costs no data point (identifiers are not billable).
    """
    attrs = _attribute_columns(tonight.collect_schema())
    snap_attrs = _attribute_columns(snapshot.collect_schema())
    old = snapshot.rename({c: _OLD + c for c in snap_attrs})
    joined = tonight.join(old, on="external_id", how="left")

    # Stage 1: each attribute's effective value tonight, and for nested values the key-level change
    # (computed once into a column: Polars does not share a subexpression under when/then).
    befores, stage = {}, []
    for c in attrs:
        before = pl.col(_OLD + c) if c in snap_attrs else pl.lit(None, pl.Utf8)
        befores[c] = before
        now = pl.when(pl.col("_dropped").list.contains(pl.lit(c))).then(before).otherwise(pl.col(c))
        stage.append(now.alias(_NOW + c))
    joined = joined.with_columns(stage)
    stage = []
    for c in attrs:
        now, before = pl.col(_NOW + c), befores[c]
        keyed = nested.keyed_array(c)
        if snapshot_empty and keyed is None and c != "subscription_groups":
            continue  # sent whole: no change to compute
        if keyed is not None:
            stage.append(nested.array_change(before, now, keyed[1]).alias(_CH + c))
        elif c == "subscription_groups":
            stage.append(nested.groups_change(before, now).alias(_CH + c))
        else:
            stage.append(nested.object_change(before, pl.when(now.str.starts_with("{")).then(now)).alias(_CH + c))
    joined = joined.with_columns(stage)

    # Stage 2: what changed, whether this user's nested objects can be merged, the fragments and their cost.
    changed, is_obj, obj_mode, array_mode = {}, {}, {}, {}
    for c in attrs:
        now, before, ch = pl.col(_NOW + c), befores[c], pl.col(_CH + c)
        if c == "subscription_groups":
            # Only groups named with a new state are sent: an empty cell unsubscribes no one (and Braze
            # rejects a null subscription_groups).
            is_obj[c] = pl.lit(False)
            changed[c] = ch.struct.field("text").is_not_null()
        elif nested.keyed_array(c) is not None:
            is_obj[c] = pl.lit(False)
            changed[c] = ch.struct.field("text").is_not_null() | (now.is_null() & before.is_not_null())
            array_mode[c] = pl.when(now.is_not_null() & changed[c]).then(ch.struct.field("mode"))
        elif snapshot_empty:
            is_obj[c] = now.str.starts_with("{").fill_null(False)
            changed[c] = now.is_not_null()
        else:
            is_obj[c] = now.str.starts_with("{").fill_null(False)
            changed[c] = pl.when(is_obj[c]).then(ch.struct.field("text").is_not_null()).otherwise(now.ne_missing(before))
            obj_mode[c] = pl.when(is_obj[c] & changed[c]).then(ch.struct.field("mode"))
    # One `_merge_objects` flag covers the whole attributes object: it is set when a nested object is patched or
    # an array item updated by `$update` (without it Braze overwrites the object, or the item, with what is
    # sent), unless a nested object must be replaced whole (it lost a key: a merge would keep that key). Then
    # every patch is sent whole instead: objects as tonight's value, arrays as the whole array.
    modes = [*obj_mode.values(), *array_mode.values()]
    any_merge = pl.any_horizontal([m == "merge" for m in modes]) if modes else pl.lit(False)
    any_set = pl.any_horizontal([m == "set" for m in obj_mode.values()]) if obj_mode else pl.lit(False)
    merging = (any_merge.fill_null(False) & ~any_set.fill_null(False)).alias("_merging")
    joined = joined.with_columns(merging, *[changed[c].fill_null(False).alias(_CHANGED + c) for c in attrs])

    kind = identity.kind_of(pl.col("external_id"))
    # The field that names the user, when it is also an attribute sent tonight: then it is the identifier.
    names_user = pl.lit(False)
    for c in (identity.EMAIL, identity.PHONE):
        if c in attrs:
            names_user = names_user | ((kind == c) & pl.col(_CHANGED + c))
    fragments, points, nulls = [], [], []
    for c in attrs:
        now, ch, did = pl.col(_NOW + c), pl.col(_CH + c), pl.col(_CHANGED + c)
        name = pl.lit(json.dumps(nested.braze_name(c), ensure_ascii=False) + ":")
        if nested.keyed_array(c) is not None:
            whole = (ch.struct.field("mode") == "merge") & ~pl.col("_merging")
            value = pl.when(now.is_null()).then(pl.lit("null")).when(whole).then(now).otherwise(ch.struct.field("text"))
            cost = (pl.when(now.is_null()).then(pl.lit(1, pl.Int64)).when(whole).then(ch.struct.field("whole_points"))
                    .otherwise(ch.struct.field("data_points")))
        elif c == "subscription_groups":
            value = pl.when(now.is_null()).then(pl.lit("null")).otherwise(ch.struct.field("text"))
            cost = pl.when(now.is_null()).then(pl.lit(1, pl.Int64)).otherwise(ch.struct.field("data_points"))
        elif snapshot_empty:
            value = now
            cost = pl.when(is_obj[c]).then(_object_points(now)).otherwise(pl.lit(1, pl.Int64))
        else:
            merge = is_obj[c] & pl.col("_merging")
            value = pl.when(merge).then(ch.struct.field("text")).otherwise(now.fill_null("null"))
            cost = (
                pl.when(merge).then(ch.struct.field("data_points"))
                .when(is_obj[c]).then(ch.struct.field("whole_points"))
                .otherwise(pl.lit(1, pl.Int64))
            )
        fragments.append(pl.when(did).then(name + value))
        billed = (did & (kind != c)) if c in (identity.EMAIL, identity.PHONE) else did
        if c in (identity.EMAIL, identity.PHONE) or c not in NOT_BILLABLE:
            points.append(pl.when(billed).then(cost).otherwise(pl.lit(0, pl.Int64)))
            nulls.append((billed & now.is_null()).cast(pl.Int64))

    body = pl.concat_str(fragments, separator=",", ignore_nulls=True) if fragments else pl.lit(None, pl.Utf8)
    n_changed = pl.sum_horizontal([pl.col(_CHANGED + c).cast(pl.Int64) for c in attrs]) if attrs else pl.lit(0)
    ident = identity.fragment(pl.col("external_id"), create_aliases=create_aliases)
    obj = pl.concat_str([
        pl.lit("{"), pl.when(names_user).then(pl.lit("")).otherwise(ident + pl.lit(",")), body,
        pl.when(pl.col("_merging")).then(pl.lit(',"_merge_objects":true')).otherwise(pl.lit("")), pl.lit("}"),
    ])

    planned = joined.with_columns(
        _n_changed=n_changed,
        object=obj,
        data_points=pl.sum_horizontal(points).cast(pl.Int64) if points else pl.lit(0, pl.Int64),
        _cleared=pl.sum_horizontal(nulls).cast(pl.Int64) if nulls else pl.lit(0, pl.Int64),
    ).with_columns(fingerprint=_xxh3(pl.col("object")))

    held_users = held.filter(pl.col("dataset") == "users").select(
        pl.col("key").alias("external_id"), pl.col("fingerprint").alias("_held_fp"), pl.col("reason").alias("_held_reason")
    )
    planned = planned.join(held_users, on="external_id", how="left").join(
        deleted_users(held), on="external_id", how="left")
    deleted = pl.col("_deleted").fill_null(False)
    # Checked once, only for objects that would be sent (the three outputs share this column).
    planned = planned.with_columns(
        _malformed=pl.when(pl.col("_n_changed") > 0).then(~is_json(pl.col("object"))).otherwise(pl.lit(False)))
    if eager:  # computed once here: Polars does not share this frame between the three outputs
        planned = planned.collect(engine="in-memory").lazy()
    is_held = (pl.col("_n_changed") > 0) & (pl.col("_held_fp") == pl.col("fingerprint"))
    malformed = pl.col("_malformed")
    to_send = (pl.col("_n_changed") > 0) & ~is_held.fill_null(False) & ~malformed & ~deleted

    send = planned.filter(to_send).select(
        pl.lit("users").alias("dataset"),
        pl.lit("attributes").alias("array"),
        pl.col("external_id").alias("key"),
        "external_id", "object", "fingerprint",
        pl.col("data_points").cast(pl.Int64),
        "_file", "_row",
    )
    kept = planned.filter(~to_send).select(
        pl.lit("users").alias("dataset"),
        pl.col("external_id").alias("key"),
        pl.when(is_held.fill_null(False) | malformed | deleted).then(pl.lit("rejected")).otherwise(pl.lit("unchanged"))
        .alias("bucket"),
        pl.when(deleted).then(pl.lit(DELETED))
        .when(is_held.fill_null(False))
        .then(pl.lit("rejected by Braze in an earlier run and unchanged since: ") + pl.col("_held_reason"))
        .when(malformed).then(pl.lit(MALFORMED))
        .alias("reason"),
        "_file", "_row",
    )
    snapshot_only = [c for c in snap_attrs if c not in attrs]
    next_rows = planned.filter(to_send).select(
        "external_id",
        *[pl.col(_NOW + c).alias(c) for c in attrs],
        *[pl.col(_OLD + c).alias(c) for c in snapshot_only],
    )
    cleared = planned.filter(pl.col("_cleared") > 0).select("external_id", pl.col("_cleared").alias("cleared"))
    return Delta(send=send, kept=kept, next_rows=next_rows, cleared=cleared)


def diff_occurrences(tonight: pl.LazyFrame, acked: pl.LazyFrame, held: pl.LazyFrame, *, dataset: str,
                     key: str | None = None) -> Delta:
    """Purchases, events or eCommerce orders (`key`: their id column): only ids never acknowledged are sent.

    An acknowledged id whose row changed is reported, not resent (Braze cannot edit an occurrence);
    an id held in doubt stays pending; one Braze rejected stays rejected until its row changes.
    """
    key = key or ("purchase_id" if dataset == "purchases" else "event_id")
    array = "purchases" if dataset == "purchases" else "events"  # eCommerce orders are custom events
    rows = tonight.rename({key: "key"})
    acked_ = acked.select("key", pl.col("fingerprint").alias("_acked_fp"))
    held_ = held.filter(pl.col("dataset") == dataset).select(
        "key", pl.col("fingerprint").alias("_held_fp"), pl.col("status").alias("_held_status"),
        pl.col("reason").alias("_held_reason"),
    )
    j = rows.join(acked_, on="key", how="left").join(held_, on="key", how="left").join(
        deleted_users(held), on="external_id", how="left")
    is_acked = pl.col("_acked_fp").is_not_null()
    in_doubt = pl.col("_held_status").eq_missing(pl.lit("in_doubt"))
    was_rejected = pl.col("_held_status").eq_missing(pl.lit("rejected")) & (pl.col("_held_fp") == pl.col("fingerprint"))
    bucket = (
        pl.when(pl.col("_deleted").fill_null(False)).then(pl.lit("rejected"))
        .when(is_acked & (pl.col("_acked_fp") == pl.col("fingerprint"))).then(pl.lit("unchanged"))
        .when(is_acked).then(pl.lit("rejected"))
        .when(in_doubt).then(pl.lit("pending"))
        .when(was_rejected).then(pl.lit("rejected"))
        .when(~is_json(pl.col("object"))).then(pl.lit("rejected"))
        .otherwise(pl.lit(None, pl.Utf8))
    )
    noun = {"purchases": "purchase", "events": "event"}.get(dataset, "recorded order event")
    reason = (
        pl.when(pl.col("_deleted").fill_null(False)).then(pl.lit(DELETED))
        .when(is_acked & (pl.col("_acked_fp") != pl.col("fingerprint")))
        .then(pl.lit(f"{key} already acknowledged with different content; Braze cannot edit a {noun}, not resent"))
        .when(in_doubt).then(pl.lit("in doubt since an earlier run (may have landed); settle it with `braze-migrate settle RUN --check`"))
        .when(was_rejected)
        .then(pl.lit("rejected by Braze in an earlier run and unchanged since: ") + pl.col("_held_reason"))
        .when(pl.col("_bucket") == "rejected").then(pl.lit(MALFORMED))
    )
    j = j.with_columns(_bucket=bucket).with_columns(_reason=reason)
    send = j.filter(pl.col("_bucket").is_null()).select(
        pl.lit(dataset).alias("dataset"), pl.lit(array).alias("array"), "key", "external_id", "object",
        "fingerprint", pl.col("data_points").cast(pl.Int64), "_file", "_row",
    )
    kept = j.filter(pl.col("_bucket").is_not_null()).select(
        pl.lit(dataset).alias("dataset"), "key", pl.col("_bucket").alias("bucket"), pl.col("_reason").alias("reason"),
        "_file", "_row",
    )
    return Delta(send=send, kept=kept)


def token_key() -> pl.Expr:
    """The key of a token row as it appears in rejects and the ledger: never the token itself."""
    return pl.concat_str([pl.col("app_id"), pl.lit(":"), _xxh3(pl.col("token")).cast(pl.Utf8)])


def diff_push_tokens(tonight: pl.LazyFrame, acked: pl.LazyFrame, held: pl.LazyFrame) -> Delta:
    """New `(app_id, token)` pairs are sent; a token that moved to another user is sent for the new user;
    an anonymous token Braze already has is left alone (Braze ignores known tokens).

    Tokens are matched by `token_key()`, so the state folder never stores a raw token."""
    acked_ = acked.select("key", pl.col("external_id").alias("_acked_uid"), pl.lit(True).alias("_acked"))
    j = tonight.with_columns(key=token_key(), fingerprint=_xxh3(pl.col("object"))).join(acked_, on="key", how="left")
    held_ = held.filter(pl.col("dataset") == "push_tokens").select(
        "key", pl.col("fingerprint").alias("_held_fp"), pl.col("reason").alias("_held_reason")
    )
    j = j.join(held_, on="key", how="left").join(deleted_users(held), on="external_id", how="left")
    known = pl.col("_acked").fill_null(False)
    same_owner = pl.col("external_id").is_null() | pl.col("external_id").eq_missing(pl.col("_acked_uid"))
    was_rejected = pl.col("_held_fp").eq_missing(pl.col("fingerprint"))
    bucket = (
        pl.when(pl.col("_deleted").fill_null(False)).then(pl.lit("deleted"))
        .when(known & same_owner).then(pl.lit("unchanged"))
        .when(was_rejected).then(pl.lit("rejected"))
        .when(~is_json(pl.col("object"))).then(pl.lit("malformed"))
        .otherwise(pl.lit(None, pl.Utf8))
    )
    j = j.with_columns(_bucket=bucket)
    send = j.filter(pl.col("_bucket").is_null()).select(
        pl.lit("push_tokens").alias("dataset"), pl.lit("attributes").alias("array"), "key", "external_id", "object",
        "fingerprint", pl.lit(0, pl.Int64).alias("data_points"), "_file", "_row",
    )
    kept = j.filter(pl.col("_bucket").is_not_null()).select(
        pl.lit("push_tokens").alias("dataset"), "key",
        pl.col("_bucket").replace({"malformed": "rejected", "deleted": "rejected"}).alias("bucket"),
        pl.when(pl.col("_bucket") == "rejected").then(
            pl.lit("rejected by Braze in an earlier run and unchanged since: ") + pl.col("_held_reason")
        ).when(pl.col("_bucket") == "malformed").then(pl.lit(MALFORMED))
        .when(pl.col("_bucket") == "deleted").then(pl.lit(DELETED)).alias("reason"),
        "_file", "_row",
    )
    return Delta(send=send, kept=kept)


_KEY = r'"(?:[^"\\]|\\.)*"\s*:'  # a JSON object key: a whole string token followed by ':'


def _object_points(v: pl.Expr) -> pl.Expr:
    """Data points of a nested object or an array of objects sent whole, at least 1: nested.key_count's count
    read from the JSON text. Every key, less the `$time` keys (a date is one value), less the keys holding a
    non-empty object that is not a date or a list of objects (they count through their own keys). A string
    value's escaped quotes never end a key token; no pattern consumes the key that follows a `{`."""
    obj = pl.when(v.str.starts_with("{") | v.str.starts_with("[")).then(v)  # objects and arrays only

    def n(pattern: str) -> pl.Expr:
        return obj.str.count_matches(pattern).cast(pl.Int64)

    objects = n(_KEY + r"\s*\{") - n(_KEY + r"\s*\{\s*\}") - n(_KEY + r'\s*\{\s*"\$time"\s*:')
    keys = n(_KEY) - n(r'"\$time"\s*:') - objects - n(_KEY + r"\s*\[\s*\{")
    return pl.max_horizontal(keys, pl.lit(1, pl.Int64))


def _attribute_cost(column: str) -> pl.Expr:
    """What sending one attribute whole costs: 1, or for a nested object or an array of objects one per value
    it holds (nested.key_count)."""
    v = pl.col(column)
    nested_value = v.str.starts_with("{") | (v.str.starts_with("[{") if nested.keyed_array(column) else False)
    return pl.when(nested_value).then(_object_points(v)).otherwise(v.is_not_null().cast(pl.Int64))


def user_points(schema: pl.Schema) -> pl.Expr:
    """Data points of sending one normalized user's attributes whole (Int64, one per row)."""
    attrs = [c for c in _attribute_columns(schema) if c not in NOT_BILLABLE]
    if not attrs:
        return pl.lit(0, pl.Int64)
    return pl.sum_horizontal([_attribute_cost(c) for c in attrs]).cast(pl.Int64)


def full_resend_cost(users: pl.LazyFrame | None, occurrences: list[pl.LazyFrame]) -> pl.LazyFrame:
    """Data points a naive full resend of tonight's export would cost: every non-empty billable attribute
    plus every event and purchase with its properties. Used to show what the delta saved."""
    parts = []
    if users is not None:
        parts.append(users.select(user_points(users.collect_schema()).sum().alias("dp"),
                                  pl.len().cast(pl.Int64).alias("objects")))
    for occ in occurrences:
        parts.append(occ.select(pl.col("data_points").sum().cast(pl.Int64).alias("dp"),
                                pl.len().cast(pl.Int64).alias("objects")))
    if not parts:
        return pl.LazyFrame({"dp": [0], "objects": [0]}, schema={"dp": pl.Int64, "objects": pl.Int64})
    return pl.concat(parts).select(pl.col("dp").sum(), pl.col("objects").sum())


def resend_points(tonight: pl.LazyFrame, delta: Delta) -> pl.LazyFrame:
    """Per user of tonight (external_id, data_points): what sending the user's row whole would cost to reach
    the same profile as the delta does: every non-empty billable value whole (`user_points`) and every value
    the delta clears tonight, since a resend writes that `null` too and Braze bills it. Its sum is the plan's
    full-resend figure, which the delta never exceeds per user (tests/test_full_resend.py)."""
    whole = tonight.select("external_id", user_points(tonight.collect_schema()).alias("data_points"))
    if delta.cleared is None:
        return whole
    return whole.join(delta.cleared, on="external_id", how="left").select(
        "external_id", (pl.col("data_points") + pl.col("cleared").fill_null(0)).alias("data_points"))
