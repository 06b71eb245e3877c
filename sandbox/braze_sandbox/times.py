"""ISO 8601 times as Braze reads them: no zone means UTC, future times become "now"."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

# Braze also documents `yyyy-MM-dd'T'HH:mm:ss:SSSZ` (a colon before the milliseconds).
_BRAZE_MS = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}):(\d{3})(Z|[+-]\d{2}:?\d{2})?$")
_DOB = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_time(value: object) -> datetime | None:
    """A timezone-aware datetime for an ISO 8601 string, or None when it is not one."""
    if type(value) is not str or len(value) < 10:
        return None
    return _parse(value.strip())


def _parse(text: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        match = _BRAZE_MS.match(text)
        if not match:
            return None
        try:
            parsed = datetime.fromisoformat(f"{match[1]}.{match[2]}{match[3] or ''}")
        except ValueError:
            return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def iso_utc(moment: datetime | float) -> str:
    """`2024-05-01T12:00:00.000Z` for a datetime or an epoch."""
    if not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(moment, UTC)
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def occurrence_time(value: object, now: datetime) -> str | None:
    """The time to store for an event or purchase: as sent, or `now` when it lies in the future."""
    if type(value) is not str or len(value) < 10:
        return None
    text = value.strip()
    parsed = _parse(text)
    if parsed is None:
        return None
    return iso_utc(now) if parsed > now else text


def is_dob(value: object) -> bool:
    """True for a real calendar date written YYYY-MM-DD."""
    if type(value) is not str or not _DOB.match(value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True
