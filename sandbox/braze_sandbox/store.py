"""The in-memory profile store: profiles, their identifier indexes, and how updates land on them.

Everything here runs on the server's event-loop thread, one request at a time, so a request's
objects apply atomically with respect to other requests. Writes are recorded for the optional
SQLite write-behind (`journal`), which never sees payloads in logs.
"""

from __future__ import annotations

import time
from typing import Any

from braze_sandbox.times import iso_utc, parse_time

Identifier = tuple[str, Any]


class Profile:
    """One Braze user profile as the sandbox stores it."""

    __slots__ = (
        "aliases",
        "anonymous",
        "braze_id",
        "created",
        "custom",
        "events",
        "external_id",
        "fields",
        "purchases",
        "seq",
        "tokens",
    )

    def __init__(self, braze_id: str, external_id: str | None = None) -> None:
        self.braze_id = braze_id
        self.external_id = external_id
        self.aliases: list[dict] = []
        self.anonymous = False
        self.created = time.time()
        self.seq = 0
        self.fields: dict[str, Any] = {}
        self.custom: dict[str, Any] = {}
        self.tokens: list[dict] = []
        self.events: list[dict] = []
        self.purchases: list[dict] = []

    @property
    def created_at(self) -> str:
        """When the profile was created, ISO 8601 UTC."""
        return iso_utc(self.created)

    @property
    def key(self) -> str:
        """external_id, else `alias:LABEL:NAME`, else `braze_id:ID` (alias-only and anonymous users)."""
        if self.external_id is not None:
            return self.external_id
        if self.aliases:
            alias = self.aliases[0]
            return f"alias:{alias['alias_label']}:{alias['alias_name']}"
        return f"braze_id:{self.braze_id}"

    def to_dict(self, with_occurrences: bool = True) -> dict:
        """The profile as tests read it back: standard fields at top level, then the rest."""
        data = {
            "external_id": self.external_id,
            "braze_id": self.braze_id,
            "user_aliases": list(self.aliases),
            "anonymous": self.anonymous,
            "created_at": self.created_at,
            **self.fields,
            "custom_attributes": dict(self.custom),
            "push_tokens": [dict(t) for t in self.tokens],
        }
        if with_occurrences:
            data["events"] = list(self.events)
            data["purchases"] = list(self.purchases)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> Profile:
        """Rebuild a profile from `to_dict(with_occurrences=False)` (persistence)."""
        profile = cls(data["braze_id"], data.get("external_id"))
        profile.aliases = list(data.get("user_aliases") or [])
        profile.anonymous = bool(data.get("anonymous"))
        created = parse_time(data.get("created_at"))
        if created is not None:
            profile.created = created.timestamp()
        profile.custom = dict(data.get("custom_attributes") or {})
        profile.tokens = list(data.get("push_tokens") or [])
        reserved = {
            "external_id",
            "braze_id",
            "user_aliases",
            "anonymous",
            "created_at",
            "custom_attributes",
            "push_tokens",
            "events",
            "purchases",
        }
        profile.fields = {k: v for k, v in data.items() if k not in reserved}
        return profile


class Store:
    """Profiles by braze_id plus the indexes Braze resolves identifiers through."""

    def __init__(self, journal: Any = None) -> None:
        self.journal = journal
        self.clear()

    def clear(self) -> None:
        """Forget every profile (the counters live elsewhere)."""
        self.profiles: dict[str, Profile] = {}
        self.by_external_id: dict[str, Profile] = {}
        self.by_alias: dict[tuple[str, str], Profile] = {}
        self.by_email: dict[str, list[Profile]] = {}
        self.by_phone: dict[str, list[Profile]] = {}
        self.token_owner: dict[tuple[str, str], Profile] = {}
        self.deprecated: dict[str, list[str]] = {}  # braze_id -> deprecated external ids (renames)
        self.next_id = 1
        self.seq = 0
        self.events_stored = 0
        self.purchases_stored = 0

    def _new_profile(self, external_id: str | None = None) -> Profile:
        profile = Profile(f"{self.next_id:024x}", external_id)
        self.next_id += 1
        self.profiles[profile.braze_id] = profile
        if external_id is not None:
            self.by_external_id[external_id] = profile
        return profile

    def find(self, ident: Identifier) -> Profile | None:
        """The profile an identifier names today, or None."""
        kind, value = ident
        if kind == "external_id":
            return self.by_external_id.get(value)
        if kind == "alias":
            return self.by_alias.get(value)
        if kind == "braze_id":
            return self.profiles.get(value)
        candidates = (self.by_email.get(value.lower()) if kind == "email" else self.by_phone.get(value)) or []
        if not candidates:
            return None
        # Braze: prefer the most recently updated profile with an external_id, else the most recent.
        identified = [p for p in candidates if p.external_id is not None]
        return max(identified or candidates, key=lambda p: p.seq)

    def all_named(self, ident: Identifier) -> list[Profile]:
        """Every profile an identifier names: one at most, but every holder of an email or phone."""
        kind, value = ident
        if kind in ("email", "phone"):
            index = self.by_email.get(value.lower()) if kind == "email" else self.by_phone.get(value)
            return list(index or [])
        profile = self.find(ident)
        return [] if profile is None else [profile]

    def set_external_id(self, profile: Profile, external_id: str) -> None:
        """Identify an alias-only profile (`/users/identify` when no user has the external_id)."""
        profile.external_id = external_id
        self.by_external_id[external_id] = profile
        self.touch(profile)

    def add_alias(self, profile: Profile, alias: tuple[str, str]) -> None:
        profile.aliases.append({"alias_name": alias[0], "alias_label": alias[1]})
        self.by_alias[alias] = profile
        self.touch(profile)

    def rename_external_id(self, profile: Profile, new: str) -> None:
        """`/users/external_ids/rename`: `new` becomes primary; the old id stays a deprecated id of the
        profile (it still finds the user) until removed."""
        self.by_external_id[new] = profile
        if profile.external_id is not None:
            self.deprecated.setdefault(profile.braze_id, []).append(profile.external_id)
        profile.external_id = new
        self.touch(profile)

    def remove_deprecated(self, external_id: str) -> None:
        """`/users/external_ids/remove`: a deprecated id no longer names its user."""
        profile = self.by_external_id.pop(external_id, None)
        if profile is not None and external_id in self.deprecated.get(profile.braze_id, []):
            self.deprecated[profile.braze_id].remove(external_id)

    def resolve(self, ident: Identifier, create: bool) -> Profile | None:
        """Find the identifier's profile, creating it when the rules allow (braze_id never creates)."""
        if ident[0] == "external_id":
            profile = self.by_external_id.get(ident[1])
            return profile if profile is not None or not create else self._new_profile(ident[1])
        profile = self.find(ident)
        if profile is not None or not create:
            return profile
        kind, value = ident
        if kind == "alias":
            profile = self._new_profile()
            profile.aliases.append({"alias_name": value[0], "alias_label": value[1]})
            self.by_alias[value] = profile
            return profile
        if kind in ("email", "phone"):
            profile = self._new_profile()
            self.set_field(profile, kind, value)
            return profile
        return None

    def new_anonymous(self) -> Profile:
        """A temporary anonymous profile for one imported push token."""
        profile = self._new_profile()
        profile.anonymous = True
        return profile

    def touch(self, profile: Profile) -> None:
        """Mark a profile updated: recency for email/phone lookups, dirtiness for persistence."""
        self.seq += 1
        profile.seq = self.seq
        if self.journal is not None:
            self.journal.profile_changed(profile)

    def set_field(self, profile: Profile, name: str, value: Any) -> None:
        """Set (or with None remove) a standard field, keeping the email/phone indexes right."""
        old = profile.fields.get(name)
        if value is None:
            profile.fields.pop(name, None)
        else:
            profile.fields[name] = value
        if name == "email":
            self._reindex(self.by_email, profile, old and old.lower(), value and value.lower())
        elif name == "phone":
            self._reindex(self.by_phone, profile, old, value)

    @staticmethod
    def _reindex(index: dict, profile: Profile, old: str | None, new: str | None) -> None:
        if old == new:
            return
        if old is not None and profile in index.get(old, ()):
            index[old].remove(profile)
            if not index[old]:
                del index[old]
        if new is not None:
            index.setdefault(new, []).append(profile)

    def add_token(self, profile: Profile, app_id: str, token: str, device_id: str | None) -> None:
        """Attach a push token to a profile; a token lives on one profile only, so it moves."""
        key = (app_id, token)
        owner = self.token_owner.get(key)
        if owner is not None and owner is not profile:
            owner.tokens = [t for t in owner.tokens if (t["app_id"], t["token"]) != key]
            self.touch(owner)
        for entry in profile.tokens:
            if entry["app_id"] == app_id and entry["token"] == token:
                if device_id is not None:
                    entry["device_id"] = device_id
                break
        else:
            profile.tokens.append({"app_id": app_id, "token": token, "device_id": device_id})
        self.token_owner[key] = profile

    def add_event(self, profile: Profile, record: dict) -> None:
        """Store one more occurrence of a custom event (Braze never deduplicates)."""
        profile.events.append(record)
        self.events_stored += 1
        self.touch(profile)
        if self.journal is not None:
            self.journal.occurrence("events", profile, record)

    def add_purchase(self, profile: Profile, record: dict) -> None:
        """Store one more purchase occurrence (Braze never deduplicates)."""
        profile.purchases.append(record)
        self.purchases_stored += 1
        self.touch(profile)
        if self.journal is not None:
            self.journal.occurrence("purchases", profile, record)

    def delete(self, profile: Profile) -> None:
        """Remove a profile with everything that indexes it (tokens, aliases, email and phone)."""
        self.set_field(profile, "email", None)
        self.set_field(profile, "phone", None)
        for entry in profile.tokens:
            self.token_owner.pop((entry["app_id"], entry["token"]), None)
        for alias in profile.aliases:
            self.by_alias.pop((alias["alias_name"], alias["alias_label"]), None)
        if profile.external_id is not None:
            self.by_external_id.pop(profile.external_id, None)
        for external_id in self.deprecated.pop(profile.braze_id, []):
            self.by_external_id.pop(external_id, None)
        self.events_stored -= len(profile.events)
        self.purchases_stored -= len(profile.purchases)
        del self.profiles[profile.braze_id]
        if self.journal is not None:
            self.journal.deleted(profile.braze_id)

    def load(self, profile: Profile) -> None:
        """Index a profile read back from persistence."""
        self.profiles[profile.braze_id] = profile
        if profile.external_id is not None:
            self.by_external_id[profile.external_id] = profile
        for alias in profile.aliases:
            self.by_alias[(alias["alias_name"], alias["alias_label"])] = profile
        if profile.fields.get("email"):
            self.by_email.setdefault(profile.fields["email"].lower(), []).append(profile)
        if profile.fields.get("phone"):
            self.by_phone.setdefault(profile.fields["phone"], []).append(profile)
        for entry in profile.tokens:
            self.token_owner[(entry["app_id"], entry["token"])] = profile
        self.events_stored += len(profile.events)
        self.purchases_stored += len(profile.purchases)
        self.next_id = max(self.next_id, int(profile.braze_id, 16) + 1)
