"""Which user an attributes, event or purchase object names, and whether it may create that user.

Braze's rules (braze-api.md, user attributes object): exactly one primary identifier, `external_id`,
`user_alias` or `braze_id`; `email`/`phone` identify only when none is present (email wins over
phone). `_update_existing_only` defaults to false for external_id, email and phone (they create
users), true for user_alias (an alias-only user needs an explicit false); braze_id never creates.
"""

from __future__ import annotations

import re

from braze_sandbox import errors
from braze_sandbox.rules import Rules
from braze_sandbox.store import Identifier

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
MAX_EXTERNAL_ID_BYTES = 987


def check_email(value: object) -> str | None:
    """The trimmed email, or None when it is not a well-formed address."""
    if type(value) is not str:
        return None
    value = value.strip()
    return value if EMAIL.match(value) else None


def identify(obj: dict, rules: Rules) -> tuple[str | None, Identifier | None, bool]:
    """(error, identifier, may_create) for one object; error is an `errors[].type` or None."""
    external_id = obj.get("external_id")
    update_only = obj.get("_update_existing_only")
    blocked = rules.blocked_external_ids
    # Fast path, the common case: one plain external_id that is not a blocked dummy id.
    if (
        type(external_id) is str
        and 0 < len(external_id) < 200
        and update_only is None
        and "user_alias" not in obj
        and "braze_id" not in obj
        and external_id.lower() not in blocked
    ):
        return None, ("external_id", external_id), True
    alias = obj.get("user_alias")
    braze_id = obj.get("braze_id")
    if (external_id is not None) + (alias is not None) + (braze_id is not None) > 1:
        return errors.MULTIPLE_IDENTIFIERS, None, False
    if update_only is not None and type(update_only) is not bool:
        return errors.BAD_UPDATE_EXISTING_ONLY, None, False
    if external_id is not None:
        if type(external_id) is not str or not external_id:
            return errors.BAD_EXTERNAL_ID, None, False
        if len(external_id) * 4 > MAX_EXTERNAL_ID_BYTES and len(external_id.encode()) > MAX_EXTERNAL_ID_BYTES:
            return errors.EXTERNAL_USER_ID_TOO_LARGE, None, False
        if external_id.lower() in blocked:
            return errors.BLACKLISTED_EXTERNAL_USER_ID, None, False
        return None, ("external_id", external_id), update_only is not True
    if alias is not None:
        if type(alias) is not dict:
            return errors.BAD_USER_ALIAS, None, False
        name, label = alias.get("alias_name"), alias.get("alias_label")
        if type(name) is not str or type(label) is not str or not name or not label:
            return errors.BAD_USER_ALIAS, None, False
        return None, ("alias", (name, label)), update_only is False
    if braze_id is not None:
        if type(braze_id) is not str or not braze_id:
            return errors.BAD_BRAZE_ID, None, False
        return None, ("braze_id", braze_id), False
    email = obj.get("email")
    if email is not None:
        checked = check_email(email)
        if checked is None:
            return errors.EMAIL_BAD_FORMAT, None, False
        return None, ("email", checked), update_only is not True
    phone = obj.get("phone")
    if type(phone) is str and phone.strip():
        return None, ("phone", phone.strip()), update_only is not True
    return errors.MISSING_IDENTIFIER, None, False
