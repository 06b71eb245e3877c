"""`POST /users/delete`: remove profiles by external_id, braze_id, user alias, email or phone, at most 50 per
request and one identifier kind per request ("Only one of external_ids, user_aliases, braze_ids,
email_addresses, or phone_numbers can be included in a single request",
https://www.braze.com/docs/api/endpoints/user_data/post_user_delete/). An email or phone deletes every profile
holding it.

Braze answers `{"deleted": n, "message": "success"}` (201) where `n` is the "number of user IDs queued for
deletion" (its page, "Response"): every identifier sent, known or not; an identifier it does not know is not an
error (deleting is idempotent). More than 50
identifiers in one request, or a body without any, is a 400. Deletion is not billable.
"""

from __future__ import annotations

from braze_sandbox.store import Store

MAX_IDS = 50
FIELDS = ("external_ids", "braze_ids", "user_aliases", "email_addresses", "phone_numbers")


def _bad(message: str) -> tuple[int, dict]:
    return 400, {"message": "Bad Request", "errors": [{"type": message}]}


def process_delete(body: object, store: Store, max_ids: int = MAX_IDS) -> tuple[int, dict]:
    """Validate and apply one delete request; return (status, JSON body)."""
    if type(body) is not dict:
        return _bad("The request body must be a JSON object")
    lists = {name: body.get(name) or [] for name in FIELDS}
    if any(type(v) is not list for v in lists.values()):
        return _bad("external_ids, braze_ids, user_aliases, email_addresses and phone_numbers must be arrays")
    total = sum(len(v) for v in lists.values())
    if total == 0:
        return _bad("Provide external_ids, braze_ids, user_aliases, email_addresses or phone_numbers")
    if sum(1 for v in lists.values() if v) > 1:
        return _bad("Only one of external_ids, user_aliases, braze_ids, email_addresses or phone_numbers "
                    "may be included in a request")
    if total > max_ids:
        return _bad(f"At most {max_ids} identifiers per request")
    idents = []
    for value in lists["external_ids"]:
        if type(value) is not str or not value:
            return _bad("external_ids must be non-empty strings")
        idents.append(("external_id", value))
    for value in lists["braze_ids"]:
        if type(value) is not str or not value:
            return _bad("braze_ids must be non-empty strings")
        idents.append(("braze_id", value))
    for alias in lists["user_aliases"]:
        if type(alias) is not dict or type(alias.get("alias_name")) is not str or type(alias.get("alias_label")) is not str:
            return _bad("user_aliases must be {alias_name, alias_label}")
        idents.append(("alias", (alias["alias_name"], alias["alias_label"])))
    for name, kind in (("email_addresses", "email"), ("phone_numbers", "phone")):
        for value in lists[name]:
            if type(value) is not str or not value.strip():
                return _bad(f"{name} must be non-empty strings")
            idents.append((kind, value.strip()))
    for ident in idents:
        for profile in store.all_named(ident):
            store.delete(profile)
    return 201, {"deleted": len(idents), "message": "success"}
