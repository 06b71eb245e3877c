"""Identity endpoints, as Braze documents them: `/users/identify`, `/users/alias/new`,
`/users/external_ids/rename` and `/users/external_ids/remove`.

- `/users/identify` (https://www.braze.com/docs/api/endpoints/user_data/post_user_identify/):
  `aliases_to_identify` [{external_id, user_alias}], at most 50. When no user has the external_id, it is added
  to the alias-only user ("the user is considered identified"). Otherwise the alias-only profile is combined
  into the identified one, then removed: fields found only on the alias-only profile (standard fields, custom
  attributes) are copied, events, purchases and push tokens move, the alias joins the identified user. When
  the identified user already has an alias with the same label, the profiles are not combined. Answer 201
  `{"aliases_processed": n, "message": "success"}`.
- `/users/alias/new` (https://www.braze.com/docs/api/endpoints/user_data/post_user_alias/): `user_aliases`
  [{alias_name, alias_label, external_id?}], at most 50: with an external_id the alias is added to that user
  (nothing when no user has it); without, an alias-only user is created.
  These two share the 20,000 requests/minute limit of `/users/delete` and `/users/merge`.
- `/users/external_ids/rename`
  (https://www.braze.com/docs/api/endpoints/user_data/external_id_migration/post_external_ids_rename/):
  `external_id_renames` [{current_external_id, new_external_id}], at most 50, 1,000 requests/minute. The
  current id must be a user's primary id (not deprecated), the new one must not be in use as a primary or a
  deprecated id, and they must differ. The new id becomes primary and the old one stays as deprecated (the user
  is found by either) until `/users/external_ids/remove`. Answer 201 `{"message": "success",
  "external_ids": [renamed current ids], "rename_errors": [[current id, reason], ...]}`.
- `/users/external_ids/remove`
  (https://www.braze.com/docs/api/endpoints/user_data/external_id_migration/post_external_ids_remove/):
  `external_ids` [deprecated ids], at most 50, 1,000 requests/minute; a primary id is an error. Answer 201
  `{"message": "success", "removed_ids": [...], "removal_errors": [[id, reason], ...]}`.
"""

from __future__ import annotations

from braze_sandbox.store import Profile, Store

IDENTIFY = "/users/identify"
ALIAS_NEW = "/users/alias/new"
RENAME = "/users/external_ids/rename"
REMOVE = "/users/external_ids/remove"
SHARED_WITH_DELETE = (IDENTIFY, ALIAS_NEW)  # 20,000 requests/minute with /users/delete and /users/merge
RENAME_RATE = "1000/60s"  # rename and remove
MAX_ITEMS = 50


def _bad(message: str) -> tuple[int, dict]:
    return 400, {"message": "Bad Request", "errors": [{"type": message}]}


def _alias(value: object) -> tuple[str, str] | None:
    if type(value) is not dict:
        return None
    name, label = value.get("alias_name"), value.get("alias_label")
    if type(name) is not str or type(label) is not str or not name or not label:
        return None
    return name, label


def _items(body: object, field: str) -> tuple[list | None, tuple[int, dict] | None]:
    if type(body) is not dict or type(body.get(field)) is not list or not body[field]:
        return None, _bad(f"{field} must be a non-empty array")
    if len(body[field]) > MAX_ITEMS:
        return None, _bad(f"At most {MAX_ITEMS} {field} per request")
    return body[field], None


def process(path: str, body: object, store: Store) -> tuple[int, dict]:
    """Validate and apply one request to an identity endpoint; (status, JSON answer)."""
    return {IDENTIFY: identify, ALIAS_NEW: alias_new, RENAME: rename, REMOVE: remove}[path](body, store)


def identify(body: object, store: Store) -> tuple[int, dict]:
    items, error = _items(body, "aliases_to_identify")
    if error:
        return error
    pairs = []
    for item in items:
        alias = _alias(item.get("user_alias")) if type(item) is dict else None
        external_id = item.get("external_id") if type(item) is dict else None
        if alias is None or type(external_id) is not str or not external_id:
            return _bad("aliases_to_identify items need an external_id and a user_alias {alias_name, alias_label}")
        pairs.append((alias, external_id))
    for alias, external_id in pairs:
        anonymous = store.by_alias.get(alias)
        if anonymous is None or anonymous.external_id is not None:
            continue  # no alias-only profile (already identified, or never created): nothing to combine
        known = store.find(("external_id", external_id))
        if known is None:
            store.set_external_id(anonymous, external_id)
        elif not any(a["alias_label"] == alias[1] for a in known.aliases):
            _combine(store, anonymous, known, alias)
    return 201, {"aliases_processed": len(pairs), "message": "success"}


def _combine(store: Store, anonymous: Profile, known: Profile, alias: tuple[str, str]) -> None:
    """Merge the alias-only profile into the identified one (fields only the alias-only profile has), then
    remove it; the alias now names the identified user."""
    fields = {k: v for k, v in anonymous.fields.items() if v is not None and known.fields.get(k) is None}
    custom = {k: v for k, v in anonymous.custom.items() if k not in known.custom}
    events, purchases, tokens = list(anonymous.events), list(anonymous.purchases), list(anonymous.tokens)
    store.delete(anonymous)
    for name, value in fields.items():
        store.set_field(known, name, value)
    known.custom.update(custom)
    for record in events:
        store.add_event(known, record)
    for record in purchases:
        store.add_purchase(known, record)
    for entry in tokens:
        store.add_token(known, entry["app_id"], entry["token"], entry.get("device_id"))
    store.add_alias(known, alias)


def alias_new(body: object, store: Store) -> tuple[int, dict]:
    items, error = _items(body, "user_aliases")
    if error:
        return error
    for item in items:
        alias = _alias(item)
        external_id = item.get("external_id") if type(item) is dict else None
        if alias is None or (external_id is not None and (type(external_id) is not str or not external_id)):
            return _bad("user_aliases items need alias_name and alias_label (and an optional external_id)")
        if alias in store.by_alias:
            continue
        if external_id is None:
            store.resolve(("alias", alias), create=True)
        elif (profile := store.find(("external_id", external_id))) is not None:
            store.add_alias(profile, alias)
    return 201, {"message": "success"}


def rename(body: object, store: Store) -> tuple[int, dict]:
    items, error = _items(body, "external_id_renames")
    if error:
        return error
    renamed, errors = [], []
    for item in items:
        current = item.get("current_external_id") if type(item) is dict else None
        new = item.get("new_external_id") if type(item) is dict else None
        if type(current) is not str or type(new) is not str or not current or not new:
            return _bad("external_id_renames items need current_external_id and new_external_id")
        profile = store.by_external_id.get(current)
        if current == new:
            errors.append([current, "current_external_id and new_external_id are the same"])
        elif profile is None or profile.external_id != current:
            errors.append([current, "current_external_id is not a user's primary external_id"])
        elif new in store.by_external_id:
            errors.append([current, "new_external_id is already in use"])
        else:
            store.rename_external_id(profile, new)
            renamed.append(current)
    return 201, {"message": "success", "external_ids": renamed, "rename_errors": errors}


def remove(body: object, store: Store) -> tuple[int, dict]:
    items, error = _items(body, "external_ids")
    if error:
        return error
    removed, errors = [], []
    for external_id in items:
        if type(external_id) is not str or not external_id:
            return _bad("external_ids must be non-empty strings")
        profile = store.by_external_id.get(external_id)
        if profile is None:
            errors.append([external_id, "external_id not found"])
        elif profile.external_id == external_id:
            errors.append([external_id, "a primary external_id cannot be removed"])
        else:
            store.remove_deprecated(external_id)
            removed.append(external_id)
    return 201, {"message": "success", "removed_ids": removed, "removal_errors": errors}
