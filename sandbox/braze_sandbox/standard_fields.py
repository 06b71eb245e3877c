"""Braze's standard profile fields: which names they are and what values each accepts.

`check(name, value)` returns (error, value): the error is an `errors[].type`; the value is the
normalized one to store, None to remove the field, or IGNORED when Braze drops it silently
(an unknown `time_zone`; the retired `bio`).
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Callable
from typing import Any

from braze_sandbox import errors
from braze_sandbox.identifiers import check_email
from braze_sandbox.locales import COUNTRY_CODES, LANGUAGE_CODES
from braze_sandbox.times import is_dob, parse_time

IGNORED = object()
SUBSCRIPTION_STATES = frozenset({"opted_in", "subscribed", "unsubscribed"})
GROUP_STATES = frozenset({"subscribed", "unsubscribed"})
# Not billable (braze-api.md "Data points"): subscription states and groups.
NOT_BILLABLE = frozenset({"email_subscribe", "push_subscribe", "subscription_groups"})

_ZONES = zoneinfo.available_timezones()

Result = tuple[str | None, Any]


def _string(value: Any, max_len: int) -> Result:
    if type(value) is not str:
        return errors.BAD_STRING_FIELD, None
    return None, value.strip()[:max_len]


def _email(value: Any, max_len: int) -> Result:
    checked = check_email(value)
    return (None, checked) if checked is not None else (errors.EMAIL_BAD_FORMAT, None)


def _gender(value: Any, max_len: int) -> Result:
    if type(value) is str and value.strip().upper() in ("M", "F", "O", "N", "P"):
        return None, value.strip().upper()
    return errors.BAD_GENDER, None


def _dob(value: Any, max_len: int) -> Result:
    return (None, value) if is_dob(value) else (errors.BAD_DOB, None)


def _country(value: Any, max_len: int) -> Result:
    if type(value) is str and value.strip().upper() in COUNTRY_CODES:
        return None, value.strip().upper()
    return errors.BAD_COUNTRY, None


def _language(value: Any, max_len: int) -> Result:
    if type(value) is str:
        text = value.strip()
        base = text[:2].lower()
        if base in LANGUAGE_CODES and (len(text) == 2 or text[2] in "-_"):
            return None, base + text[2:]
    return errors.BAD_LANGUAGE, None


def _time_zone(value: Any, max_len: int) -> Result:
    if type(value) is str and (value in _ZONES or not _ZONES):
        return None, value
    return None, IGNORED


def _email_subscribe(value: Any, max_len: int) -> Result:
    ok = type(value) is str and value in SUBSCRIPTION_STATES
    return (None, value) if ok else (errors.BAD_EMAIL_SUBSCRIPTION_STATE, None)


def _push_subscribe(value: Any, max_len: int) -> Result:
    ok = type(value) is str and value in SUBSCRIPTION_STATES
    return (None, value) if ok else (errors.BAD_PUSH_SUBSCRIPTION_STATE, None)


def _date(value: Any, max_len: int) -> Result:
    return (None, value.strip()) if parse_time(value) is not None else (errors.BAD_DATE_FIELD, None)


def _boolean(value: Any, max_len: int) -> Result:
    return (None, value) if type(value) is bool else (errors.BAD_BOOLEAN_FIELD, None)


def _current_location(value: Any, max_len: int) -> Result:
    if type(value) is dict:
        lon, lat = value.get("longitude"), value.get("latitude")
        numbers = all(type(v) in (int, float) for v in (lon, lat))
        if numbers and -180 <= lon <= 180 and -90 <= lat <= 90:
            return None, {"longitude": lon, "latitude": lat}
    return errors.BAD_CURRENT_LOCATION, None


def _subscription_groups(value: Any, max_len: int) -> Result:
    if type(value) is not list:
        return errors.BAD_SUBSCRIPTION_GROUPS, None
    groups = {}
    for entry in value:
        if type(entry) is not dict:
            return errors.BAD_SUBSCRIPTION_GROUPS, None
        group_id, state = entry.get("subscription_group_id"), entry.get("subscription_state")
        if type(group_id) is not str or not group_id or state not in GROUP_STATES:
            return errors.BAD_SUBSCRIPTION_GROUPS, None
        groups[group_id] = state
    return None, groups


def _object(value: Any, max_len: int) -> Result:
    return (None, value) if type(value) is dict else (errors.BAD_STRING_FIELD, None)


def _retired(value: Any, max_len: int) -> Result:
    return None, IGNORED


CHECKS: dict[str, Callable[[Any, int], Result]] = {
    "first_name": _string,
    "last_name": _string,
    "home_city": _string,
    "image_url": _string,
    "phone": _string,
    "email": _email,
    "gender": _gender,
    "dob": _dob,
    "country": _country,
    "language": _language,
    "time_zone": _time_zone,
    "email_subscribe": _email_subscribe,
    "push_subscribe": _push_subscribe,
    "subscription_groups": _subscription_groups,
    "current_location": _current_location,
    "date_of_first_session": _date,
    "date_of_last_session": _date,
    "marked_email_as_spam_at": _date,
    "email_open_tracking_disabled": _boolean,
    "email_click_tracking_disabled": _boolean,
    "facebook": _object,
    "twitter": _object,
    "bio": _retired,
}

# Fields whose string values repeat across users, so their check results are worth remembering.
FEW_VALUES = frozenset(
    {"gender", "dob", "country", "language", "time_zone", "email_subscribe", "push_subscribe"}
)

# Fields that a null removes; the subscription states and groups take only their own values.
NULLABLE = frozenset(CHECKS) - {"email_subscribe", "push_subscribe", "subscription_groups", "bio"}


def check(name: str, value: Any, max_len: int) -> Result:
    """Validate one standard field value (see the module docstring for the result)."""
    if value is None:
        if name in NULLABLE:
            return None, None
        if name == "bio":
            return None, IGNORED
    return CHECKS[name](value, max_len)
