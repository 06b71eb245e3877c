"""Which Braze user a row names, as one text key: external_id, a user alias, an email or a phone.

`/users/track` identifies a user by `external_id`, by a `user_alias` ({alias_name, alias_label}), or, when
neither is present, by `email` and then `phone` (docs/identity.md). A row carrying several uses that
precedence. The state folder keys users by one text column (`external_id` in the snapshot, the ledger and the
memo), so an identity is encoded as one text:

- an external_id user's key is the external_id itself, byte for byte (state written before identities
  existed stays valid: nothing is resent after an upgrade);
- any other user's key is `SEP kind SEP value` (`SEP` is U+001F): `\\x1fuser_alias\\x1f<name>\\x1f<label>`,
  `\\x1femail\\x1f<lower-cased email>`, `\\x1fphone\\x1f<E.164 phone>`. An external_id starting with `SEP`
  is rejected, so no two identities share a key.

Pure expressions: no I/O.
"""

from __future__ import annotations

import polars as pl

SEP = "\x1f"
EXTERNAL_ID, USER_ALIAS, EMAIL, PHONE = "external_id", "user_alias", "email", "phone"
KINDS = (EXTERNAL_ID, USER_ALIAS, EMAIL, PHONE)  # the precedence, first wins
# The export columns that identify a user (besides being, for email and phone, profile fields).
COLUMNS = ("external_id", "alias_name", "alias_label", "email", "phone")
EMAIL_PATTERN = r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)*\.[^@\s.]{2,}$"
E164 = r"^\+[1-9][0-9]{6,14}$"


def _json_text(expr: pl.Expr) -> pl.Expr:
    encoded = pl.struct(expr.alias("v")).struct.json_encode()
    return encoded.str.strip_prefix('{"v":').str.strip_suffix("}")


def encode(kind: str, *values: pl.Expr) -> pl.Expr:
    """The key of an identity of `kind` from its value(s) (alias: name then label)."""
    if kind == EXTERNAL_ID:
        return values[0]
    parts: list[pl.Expr] = [pl.lit(SEP + kind)]
    for v in values:
        parts += [pl.lit(SEP), v]
    return pl.concat_str(parts)


def kind_of(key: pl.Expr) -> pl.Expr:
    """The identifier kind of a key (`external_id`, `user_alias`, `email`, `phone`); null for a null key."""
    return (
        pl.when(key.is_null()).then(pl.lit(None, pl.String))
        .when(key.str.starts_with(SEP)).then(key.str.split(SEP).list.get(1, null_on_oob=True))
        .otherwise(pl.lit(EXTERNAL_ID))
    )


def _part(key: pl.Expr, i: int) -> pl.Expr:
    return key.str.split(SEP).list.get(i, null_on_oob=True)


def external_id_of(key: pl.Expr) -> pl.Expr:
    """The external_id of an external_id key, null for any other identity."""
    return pl.when(~key.str.starts_with(SEP)).then(key)


def fragment(key: pl.Expr, *, create_aliases: bool = False) -> pl.Expr:
    """The identifier part of a Braze object for `key`, without braces: `"external_id":"u1"`,
    `"user_alias":{"alias_name":..,"alias_label":..}`, `"email":".."` or `"phone":".."`.

    `create_aliases`: an alias object may create its user (`"_update_existing_only":false`); Braze's default
    for a user_alias is to update existing users only."""
    kind = kind_of(key)
    alias = pl.concat_str([
        pl.lit('"user_alias":{"alias_name":'), _json_text(_part(key, 2)),
        pl.lit(',"alias_label":'), _json_text(_part(key, 3)), pl.lit("}"),
        pl.lit(',"_update_existing_only":false' if create_aliases else ""),
    ])
    return (
        pl.when(kind == USER_ALIAS).then(alias)
        .when(kind == EMAIL).then(pl.lit('"email":') + _json_text(_part(key, 2)))
        .when(kind == PHONE).then(pl.lit('"phone":') + _json_text(_part(key, 2)))
        .otherwise(pl.lit('"external_id":') + _json_text(key))
    )


def display(key: pl.Expr) -> pl.Expr:
    """A key as a person may read it in a rejects file: the external_id, `alias <label>:<name>`, or only
    `email` / `phone` (personal data; the file and row name the record)."""
    kind = kind_of(key)
    return (
        pl.when(kind == USER_ALIAS).then(pl.concat_str([pl.lit("alias "), _part(key, 3), pl.lit(":"), _part(key, 2)]))
        .when(kind.is_in([EMAIL, PHONE])).then(kind)
        .otherwise(key)
    )


def request_identifier(key: str) -> tuple[str, object]:
    """(kind, value) of one key, for building request bodies in Python: the external_id, the alias
    as {alias_name, alias_label}, the email or the phone."""
    if not key.startswith(SEP):
        return EXTERNAL_ID, key
    parts = key.split(SEP)
    if parts[1] == USER_ALIAS:
        return USER_ALIAS, {"alias_name": parts[2], "alias_label": parts[3]}
    return parts[1], parts[2]


def key_of(kind: str, value: object) -> str:
    """The key of one identity given in Python (the inverse of `request_identifier`)."""
    if kind == EXTERNAL_ID:
        return str(value)
    if kind == USER_ALIAS:
        assert isinstance(value, dict)
        return SEP.join(["", USER_ALIAS, value["alias_name"], value["alias_label"]])
    return SEP.join(["", kind, str(value)])


def display_key(key: str) -> str:
    """`display` for one key given in Python."""
    kind, value = request_identifier(key)
    if kind == USER_ALIAS:
        assert isinstance(value, dict)
        return f"alias {value['alias_label']}:{value['alias_name']}"
    return kind if kind in (EMAIL, PHONE) else key


def census(schema: pl.Schema, key: pl.Expr) -> list[pl.Expr]:
    """Aggregations counting a dataset's rows by the kind of identifier that names them (`key`: the row's
    key, null when none), and the rows that carry several identifiers (the precedence chose one)."""
    present = [
        pl.col(c).cast(pl.String).str.strip_chars().str.len_bytes().gt(0).fill_null(False)
        for c in ("external_id", "email", "phone") if c in schema
    ]
    if "alias_name" in schema and "alias_label" in schema:
        present.append(pl.all_horizontal(
            pl.col(c).cast(pl.String).str.strip_chars().str.len_bytes().gt(0).fill_null(False)
            for c in ("alias_name", "alias_label")))
    kind = kind_of(key)
    counts = [(kind == k).sum().alias(k) for k in KINDS]
    counts.append(key.is_null().sum().alias("none"))
    several = pl.sum_horizontal([p.cast(pl.Int32) for p in present]) > 1 if present else pl.lit(False)
    counts.append(several.sum().alias("several"))
    return counts
