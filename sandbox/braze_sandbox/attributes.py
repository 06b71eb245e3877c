"""Attributes objects: validate one into an update, then apply the update to the store.

Validation never looks at stored state, so an object is either rejected whole (one error in
`errors[]`) or applied whole. Braze rules kept here (braze-api.md, "Attributes object"):
names and strings are trimmed and silently truncated; names starting with `$` are rejected;
`null` removes; `{"inc": n}`; arrays are sets with a maximum length that drops the oldest;
nested objects overwrite unless `_merge_objects`, and one invalid nested value drops that
attribute's update (silently, as Braze does; counted in the stats); arrays of objects change item by
item with `$add`, `$remove`, `$update` (applied in that order), an `$update` overwriting the item
unless `_merge_objects`, and stay within 100 KB. docs/braze-fidelity.md lists each rule with its page.
"""

from __future__ import annotations

from typing import Any

import orjson

from braze_sandbox import datapoints, errors, standard_fields
from braze_sandbox.identifiers import identify
from braze_sandbox.push_tokens import Token, check_tokens
from braze_sandbox.rules import Rules
from braze_sandbox.store import Identifier, Profile, Store
from braze_sandbox.times import parse_time

CONTROL_KEYS = frozenset(
    {
        "external_id",
        "user_alias",
        "braze_id",
        "_update_existing_only",
        "push_token_import",
        "_merge_objects",
        "push_tokens",
    }
)
MAX_NESTED_BYTES = 100 * 1024
ITEM_OPERATORS = frozenset({"$add", "$remove", "$update"})
MAX_NESTED_DEPTH = 50
_BAD_KEY_CHARS = (" ", ".", "$")
MAX_CACHED_NAMES = 100_000
SKIP, CUSTOM, STANDARD = 0, 1, 2


class AttributeUpdate:
    """A validated attributes object: whom it names and what it writes.

    Plain values go to `custom` and `fields` (applied with one dict update each, the common case);
    removals, increments, array changes and nested objects go to `ops`, applied in order.
    """

    __slots__ = ("create", "custom", "data_points", "fields", "ident", "nested_dropped", "ops", "tokens")

    def __init__(self, ident: Identifier, create: bool) -> None:
        self.ident = ident
        self.create = create
        self.custom: dict[str, Any] = {}
        self.fields: dict[str, Any] = {}
        self.ops: list[tuple[str, str, Any]] = []
        self.tokens: list[Token] = []
        self.data_points = 0
        self.nested_dropped = 0


def value_key(value: Any) -> Any:
    """Identity of an array element: `1`, `1.0`, `True` and `"1"` stay distinct; objects by content."""
    kind = type(value)
    if kind is str:
        return value
    if kind is dict:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    return (kind, value)


def _nested_ok(value: Any, depth: int = 0) -> bool:
    """Braze's nested-object rules: no null, keys without spaces, dots or `$`, valid `$time` dates."""
    kind = type(value)
    if kind is dict:
        if depth > MAX_NESTED_DEPTH:
            return False
        if len(value) == 1 and "$time" in value:
            return parse_time(value["$time"]) is not None
        for key, item in value.items():
            if not key or any(c in key for c in _BAD_KEY_CHARS) or not _nested_ok(item, depth + 1):
                return False
        return True
    if kind is list:
        return all(type(item) is not list and _nested_ok(item, depth + 1) for item in value)
    return value is not None


def _array_values(values: list, rules: Rules) -> list | None:
    """Elements made unique (first kept) and trimmed, or None when one is not allowed."""
    max_len = rules.max_string_length
    unique: dict = {}
    for item in values:
        if type(item) is not str:
            break
        unique[item.strip()[:max_len]] = None
    else:
        return list(unique)
    seen, out = set(), []
    for item in values:
        kind = type(item)
        if kind is str:
            item = item.strip()[:max_len]
        elif kind is dict:
            if not _nested_ok(item):
                return None
        elif kind not in (int, float, bool):
            return None
        key = value_key(item)
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out


def _custom(update: AttributeUpdate, name: str, value: Any, rules: Rules) -> str | None:
    """Add the op for one custom attribute; return an error type when the object must be rejected.

    Strings, numbers and booleans take the inlined fast path in `check_attributes`.
    """
    if value is None:
        update.ops.append(("del", name, None))
        update.data_points += 1
    elif type(value) is list:
        if any(type(v) is dict for v in value):
            return _objects_array(update, name, value)
        values = _array_values(value, rules)
        if values is None:
            return errors.BAD_ARRAY_VALUE
        update.custom[name] = values[-rules.max_array_length :]
        update.data_points += 1
    elif "inc" in value and len(value) == 1:
        step = value["inc"]
        if type(step) is not int:
            return errors.BAD_INCREMENT
        update.ops.append(("inc", name, step))
        update.data_points += 1
    elif value and value.keys() <= {"add", "remove"}:
        add, remove = value.get("add", []), value.get("remove", [])
        if type(add) is not list or type(remove) is not list:
            return errors.BAD_ARRAY_OPERATION
        add, remove = _array_values(add, rules), _array_values(remove, rules)
        if add is None or remove is None:
            return errors.BAD_ARRAY_VALUE
        update.ops.append(("array", name, (add, remove)))
        update.data_points += datapoints.array_change(add, remove)
    elif value and value.keys() <= ITEM_OPERATORS:
        error, ops = _item_operations(value)
        if error:
            return error
        if ops is None:
            update.nested_dropped += 1
        else:
            update.ops.append(("items", name, ops))
            update.data_points += datapoints.item_operations(*ops)
    elif not _nested_ok(value) or len(orjson.dumps(value)) > MAX_NESTED_BYTES:
        update.nested_dropped += 1
    else:
        update.ops.append(("object", name, value))
        update.data_points += datapoints.whole_value(value)
    return None


def _objects_array(update: AttributeUpdate, name: str, value: list) -> str | None:
    """An array of objects set whole: no limit on the number of items, at most 100 KB (Array of objects,
    "Limitations"); an item breaking the nested-object rules or a value over 100 KB drops the attribute's
    update while the request succeeds. Items are kept as sent: Braze does not make them unique."""
    if not all(type(v) is dict for v in value):
        return errors.BAD_ARRAY_VALUE
    if not all(_nested_ok(v) for v in value) or len(orjson.dumps(value)) > MAX_NESTED_BYTES:
        update.nested_dropped += 1
        return None
    update.custom[name] = value
    update.data_points += datapoints.whole_value(value)
    return None


def _item_operations(value: dict) -> tuple[str | None, tuple | None]:
    """An array-of-objects change `{"$add": [...], "$remove": [...], "$update": [...]}` checked:
    (error type rejecting the object, None) when malformed; (None, None) when an item breaks the
    nested-object rules (Braze drops that attribute's update only); else (None, (add, remove, update)).
    """
    add, remove, update = value.get("$add", []), value.get("$remove", []), value.get("$update", [])
    if type(add) is not list or type(remove) is not list or type(update) is not list:
        return errors.BAD_ITEM_OPERATION, None
    identified = remove + update
    for entry in identified:
        if (
            type(entry) is not dict
            or type(entry.get("$identifier_key")) is not str
            or type(entry.get("$identifier_value")) not in (str, int, float)
        ):
            return errors.BAD_ITEM_OPERATION, None
    for entry in update:
        if type(entry.get("$new_object")) is not dict:
            return errors.BAD_ITEM_OPERATION, None
    if not all(type(item) is dict and _nested_ok(item) for item in add):
        return None, None
    if not all(_nested_ok(entry["$new_object"]) for entry in update):
        return None, None
    removals = [(e["$identifier_key"], e["$identifier_value"]) for e in remove]
    updates = [(e["$identifier_key"], e["$identifier_value"], e["$new_object"]) for e in update]
    return None, (add, removals, updates)


def _apply_items(current: Any, ops: tuple, merge: bool) -> list | None:
    """Braze's order for item operations: add, then remove, then update; None when the result would be
    over 100 KB (Braze drops the update and the attribute is unchanged)."""
    add, removals, updates = ops
    items = [dict(x) for x in current if type(x) is dict] if type(current) is list else []
    items.extend(add)
    for key, value in removals:
        items = [x for x in items if not (key in x and x[key] == value and type(x[key]) is type(value))]
    for key, value, new_object in updates:
        for i, item in enumerate(items):
            if key in item and item[key] == value and type(item[key]) is type(value):
                # "You must set `_merge_objects` to true, or your objects will be overwritten.
                # `_merge_objects` is false by default." (Array of objects, "API example", Update)
                items[i] = _deep_merge(item, new_object) if merge else dict(new_object)
    return None if len(orjson.dumps(items)) > MAX_NESTED_BYTES else items


def _identify(obj: dict, rules: Rules) -> tuple[str | None, Identifier | None, bool]:
    """Identifier rules plus the anonymous push-token import (`push_token_import: true`)."""
    token_import = obj.get("push_token_import")
    if token_import is None or token_import is False:
        return identify(obj, rules)
    if token_import is not True:
        return errors.BAD_PUSH_TOKEN_IMPORT, None, False
    named = any(obj.get(k) is not None for k in ("external_id", "braze_id", "user_alias"))
    if named or not obj.get("push_tokens"):
        return errors.BAD_PUSH_TOKEN_IMPORT, None, False
    return None, ("anonymous", None), True


def _remembered(check, cache: dict, name: str):
    """A standard-field check that remembers its answers for string values (few distinct ones)."""

    def remembered(value: Any, max_len: int) -> tuple:
        if type(value) is not str:
            return check(value, max_len)
        key = (name, value)
        result = cache.get(key)
        if result is None:
            result = check(value, max_len)
            if len(cache) < MAX_CACHED_NAMES:
                cache[key] = result
        return result

    return remembered


def _name_info(raw_name: str, rules: Rules) -> tuple:
    """(kind, name, standard check, data points) for an attribute name, cached per server.

    kind is SKIP (a control key), CUSTOM, STANDARD, or the error type that rejects the object.
    """
    info = rules.name_cache.get(raw_name)
    if info is not None:
        return info
    name = raw_name.strip()[: rules.max_string_length]
    if raw_name in CONTROL_KEYS:
        info = (SKIP, raw_name, None, 0)
    elif not name:
        info = (errors.EMPTY_ATTRIBUTE_NAME, name, None, 0)
    elif name[0] == "$":
        info = (errors.DOLLAR_ATTRIBUTE_NAME, name, None, 0)
    elif name in standard_fields.CHECKS:
        check = standard_fields.CHECKS[name]
        if name in standard_fields.FEW_VALUES:
            check = _remembered(check, rules.value_cache, name)
        info = (STANDARD, name, check, datapoints.standard_field(name))
    else:
        info = (CUSTOM, name, None, 1)
    if len(rules.name_cache) < MAX_CACHED_NAMES:
        rules.name_cache[raw_name] = info
    return info


def check_attributes(obj: dict, rules: Rules) -> tuple[str | None, AttributeUpdate | None]:
    """(error, update) for one attributes object; exactly one of them is None."""
    external_id = obj.get("external_id")
    if (
        type(external_id) is str
        and 0 < len(external_id) < 200
        and "_update_existing_only" not in obj
        and "user_alias" not in obj
        and "braze_id" not in obj
        and "push_token_import" not in obj
        and external_id.lower() not in rules.blocked_external_ids
    ):
        # `identify`'s common case inlined: this runs for every attributes object.
        ident, create = ("external_id", external_id), True
    else:
        error, ident, create = _identify(obj, rules)
        if error:
            return error, None
    merge = obj.get("_merge_objects", False)
    if type(merge) is not bool:
        return errors.BAD_MERGE_OBJECTS, None
    update = AttributeUpdate(ident, create)
    if "push_tokens" in obj:
        error, update.tokens = check_tokens(obj["push_tokens"], rules.push_apps)
        if error:
            return error, None
    identifier_field = ident[0] if ident[0] in ("email", "phone") else None
    max_len = rules.max_string_length
    names = rules.name_cache
    custom, fields = update.custom, update.fields
    points = 0
    nullable, ignored = standard_fields.NULLABLE, standard_fields.IGNORED
    for raw_name, value in obj.items():
        info = names.get(raw_name)
        if info is None:
            info = _name_info(raw_name, rules)
        kind, name, check, cost = info
        if kind is CUSTOM:
            value_type = type(value)
            if value_type is str:
                custom[name] = value.strip()[:max_len]
                points += 1
            elif value_type is int or value_type is float or value_type is bool:
                custom[name] = value
                points += 1
            else:
                error = _custom(update, name, value, rules)
                if error:
                    return error, None
        elif kind is STANDARD:
            if name == identifier_field:
                continue
            if value is None and name in nullable:
                fields[name] = None
                points += cost
                continue
            error, checked = check(value, max_len)
            if error:
                return error, None
            if checked is ignored:
                continue
            if name == "subscription_groups":
                update.ops.append(("groups", name, checked))
            else:
                fields[name] = checked
            points += cost
        elif kind is not SKIP:
            return kind, None
    update.data_points += points
    if merge:
        update.ops = [
            ("merge", n, v) if op == "object" else ("merge_items", n, v) if op == "items" else (op, n, v)
            for op, n, v in update.ops
        ]
    return None, update


def _deep_merge(into: dict, new: dict) -> dict:
    merged = dict(into)
    for key, value in new.items():
        old = merged.get(key)
        is_time = type(value) is dict and len(value) == 1 and "$time" in value
        merged[key] = (
            _deep_merge(old, value) if type(old) is dict and type(value) is dict and not is_time else value
        )
    return merged


def _apply(store: Store, profile: Profile, update: AttributeUpdate, max_array: int) -> int:
    """Write the update on one profile; return the data points of changes dropped as over 100 KB (only
    known once the stored value is at hand: nothing written, nothing billed)."""
    unwritten = 0
    fields = update.fields
    if fields:
        if None in fields.values():
            for name, value in fields.items():
                store.set_field(profile, name, value)
        else:
            for indexed in ("email", "phone"):
                if indexed in fields:
                    store.set_field(profile, indexed, fields[indexed])
            profile.fields.update(fields)
    custom = profile.custom
    custom.update(update.custom)
    for op, name, value in update.ops:
        if op == "object":
            custom[name] = value
        elif op == "del":
            custom.pop(name, None)
        elif op == "inc":
            current = custom.get(name)
            base = current if type(current) in (int, float) else 0
            custom[name] = base + value
        elif op == "array":
            add, remove = value
            current = custom.get(name)
            items = list(current) if type(current) is list else []
            for item in add:
                key = value_key(item)
                items = [x for x in items if value_key(x) != key]
                items.append(item)
            gone = {value_key(x) for x in remove}
            custom[name] = [x for x in items if value_key(x) not in gone][-max_array:]
        elif op == "merge":
            current = custom.get(name)
            merged = _deep_merge(current, value) if type(current) is dict else value
            # "If an update causes the object to exceed 100 KB, Braze drops the update, and the attribute
            # is unchanged." (Nested custom attributes, "Considerations")
            if len(orjson.dumps(merged)) <= MAX_NESTED_BYTES:
                custom[name] = merged
            else:
                unwritten += datapoints.whole_value(value)
        elif op == "items" or op == "merge_items":
            items = _apply_items(custom.get(name), value, op == "merge_items")
            if items is None:
                unwritten += datapoints.item_operations(*value)
            else:
                custom[name] = items
        elif op == "groups":
            profile.fields["subscription_groups"] = {**profile.fields.get("subscription_groups", {}), **value}
    return unwritten


def apply_attributes(store: Store, update: AttributeUpdate, max_array: int) -> tuple[int, int]:
    """Write the update; return (profiles written, data points billed). No profile written (none exists and
    none may be created) bills nothing.

    An anonymous push-token import writes one new profile per token Braze does not know yet.
    """
    if update.ident[0] == "anonymous":
        written = points = 0
        for app_id, token, device_id in update.tokens:
            if (app_id, token) in store.token_owner:
                continue
            profile = store.new_anonymous()
            store.add_token(profile, app_id, token, device_id)
            points += update.data_points - _apply(store, profile, update, max_array)
            store.touch(profile)
            written += 1
        return written, points
    profile = store.resolve(update.ident, update.create)
    if profile is None:
        return 0, 0
    points = update.data_points - _apply(store, profile, update, max_array)
    for app_id, token, device_id in update.tokens:
        store.add_token(profile, app_id, token, device_id)
    store.touch(profile)
    return 1, points
