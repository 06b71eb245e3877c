"""`POST /users/export/ids`: read profiles back the way Braze exports them.

Shape (Braze "Export user profile by identifier"): standard fields at top level, custom attributes
in `custom_attributes`, push tokens as `[{app, platform, token, device_id}]`, custom events and
purchases only as per-name aggregates `{name, first, last, count}`. At most 50 external_ids and
user_aliases together; `fields_to_export` is required (workspaces created since 2024-08-22).
Fields Braze "includes the least data possible" for: unset standard fields are left out.
"""

from __future__ import annotations

import time

from braze_sandbox.config import SandboxConfig
from braze_sandbox.push_tokens import platform_of
from braze_sandbox.store import Profile, Store
from braze_sandbox.times import iso_utc, parse_time

STANDARD = frozenset(
    {
        "first_name",
        "last_name",
        "email",
        "dob",
        "home_city",
        "country",
        "phone",
        "language",
        "time_zone",
        "gender",
        "email_subscribe",
        "push_subscribe",
    }
)
WITHOUT_DATA = frozenset(
    {
        "apps",
        "attributed_campaign",
        "attributed_source",
        "attributed_adgroup",
        "attributed_ad",
        "campaigns_received",
        "canvases_received",
        "cards_clicked",
        "devices",
        "random_bucket",
        "uninstalled_at",
    }
)
FIELDS = (
    STANDARD
    | WITHOUT_DATA
    | {
        "braze_id",
        "created_at",
        "custom_attributes",
        "custom_events",
        "external_id",
        "last_coordinates",
        "purchases",
        "push_tokens",
        "total_revenue",
        "user_aliases",
    }
)
TOO_MANY_IDS = "The max number of external_ids and aliases per request was exceeded"


def _bad(message: str) -> tuple[int, dict]:
    return 400, {"message": message, "errors": [{"type": message}]}


def _aggregate(records: list[dict], name_key: str, weighted: bool, since: float | None) -> list[dict]:
    """Per-name {name, first, last, count}; a purchase of quantity X counts X times."""
    by_name: dict[str, list] = {}
    for record in records:
        moment = parse_time(record["time"])
        stamp = moment.timestamp() if moment else 0.0
        if since is not None and stamp < since:
            continue
        entry = by_name.setdefault(record[name_key], [stamp, stamp, 0])
        entry[0], entry[1] = min(entry[0], stamp), max(entry[1], stamp)
        entry[2] += record.get("quantity", 1) if weighted else 1
    return [
        {"name": name, "first": iso_utc(first), "last": iso_utc(last), "count": count}
        for name, (first, last, count) in by_name.items()
    ]


def render(profile: Profile, fields: list[str], config: SandboxConfig) -> dict:
    """One exported user with the requested fields (external_id is always given when known)."""
    days = config.export_event_window_days
    since = time.time() - days * 86400 if days is not None else None
    user: dict = {}
    if profile.external_id is not None:
        user["external_id"] = profile.external_id
    for field in fields:
        if field in STANDARD:
            if profile.fields.get(field) is not None:
                user[field] = profile.fields[field]
        elif field == "braze_id":
            user["braze_id"] = profile.braze_id
        elif field == "created_at":
            user["created_at"] = profile.created_at
        elif field == "user_aliases" and profile.aliases:
            user["user_aliases"] = list(profile.aliases)
        elif field == "custom_attributes":
            user["custom_attributes"] = dict(profile.custom)
        elif field == "custom_events":
            user["custom_events"] = _aggregate(profile.events, "name", False, since)
        elif field == "purchases":
            user["purchases"] = _aggregate(profile.purchases, "product_id", True, since)
        elif field == "total_revenue":
            user["total_revenue"] = sum(p["price"] * p["quantity"] for p in profile.purchases)
        elif field == "last_coordinates" and profile.fields.get("current_location"):
            location = profile.fields["current_location"]
            user["last_coordinates"] = [location["longitude"], location["latitude"]]
        elif field == "push_tokens":
            user["push_tokens"] = [
                {
                    "app": t["app_id"],
                    "platform": platform_of(t["app_id"], t["token"], config.push_apps),
                    "token": t["token"],
                    "device_id": t["device_id"],
                }
                for t in profile.tokens
            ]
    return user


def process_export(body: object, store: Store, config: SandboxConfig) -> tuple[int, dict]:
    """Validate one export request and answer it; return (status, JSON body)."""
    if type(body) is not dict:
        return _bad("The request body must be a JSON object")
    external_ids = body.get("external_ids") or []
    aliases = body.get("user_aliases") or []
    if type(external_ids) is not list or not all(type(x) is str for x in external_ids):
        return _bad("external_ids must be an array of strings")
    if type(aliases) is not list or not all(type(a) is dict for a in aliases):
        return _bad("user_aliases must be an array of user alias objects")
    if len(external_ids) + len(aliases) > config.export_max_ids:
        return _bad(TOO_MANY_IDS)
    fields = body.get("fields_to_export")
    if fields is None:
        if config.export_requires_fields:
            return _bad("fields_to_export is required")
        fields = sorted(FIELDS)
    if type(fields) is not list or not all(type(f) is str for f in fields):
        return _bad("fields_to_export must be an array of strings")
    unknown = [f for f in fields if f not in FIELDS]
    if unknown:
        return _bad(f"Invalid fields_to_export: {', '.join(sorted(unknown))}")
    singles = [(k, body.get(k)) for k in ("braze_id", "email_address", "phone", "device_id")]
    if not external_ids and not aliases and not any(v for _, v in singles):
        return _bad("Provide external_ids, user_aliases, braze_id, email_address, phone or device_id")
    found: list[Profile] = []
    invalid: list[str] = []
    for external_id in external_ids:
        profile = store.by_external_id.get(external_id)
        if profile is None:
            invalid.append(external_id)
        else:
            found.append(profile)
    for alias in aliases:
        profile = store.by_alias.get((alias.get("alias_name"), alias.get("alias_label")))
        if profile is not None:
            found.append(profile)
    found.extend(_singles(store, dict(singles)))
    users = [render(profile, fields, config) for profile in found]
    return 201, {"users": users, "invalid_user_ids": invalid, "message": "success"}


def _singles(store: Store, singles: dict) -> list[Profile]:
    """Profiles named by braze_id, email_address, phone or device_id (one each, per Braze)."""
    found = []
    if type(singles["braze_id"]) is str and singles["braze_id"] in store.profiles:
        found.append(store.profiles[singles["braze_id"]])
    if type(singles["email_address"]) is str:
        found.extend(store.by_email.get(singles["email_address"].strip().lower(), []))
    if type(singles["phone"]) is str:
        found.extend(store.by_phone.get(singles["phone"].strip(), []))
    if type(singles["device_id"]) is str:
        found.extend(
            p
            for p in store.profiles.values()
            if any(t["device_id"] == singles["device_id"] for t in p.tokens)
        )
    return found
