"""Verify a load: sample users of an export, read them back from Braze, and list what differs.

What "should be there" is the export normalized exactly as a load normalizes it: rejected rows and dropped
cells set no expectation, and neither do objects the state folder holds as rejected by Braze (they are in
the rejects file already). Events and purchases held in doubt may or may not have landed, so their counts
are ranges. Only external_ids, field names and mismatch kinds leave this module, never a value.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import polars_hash as plh

from braze_migrate.plan.planner import normalized_datasets
from connectors.braze.export import BrazeExporter
from connectors.state.snapshot import Snapshot
from connectors.states import HeldReason
from transforms.deltas import token_key
from transforms.identity import display_key
from transforms.nested import braze_name

DEFAULT_SAMPLE = 200
# Standard profile fields that the export returns at the top level of a user.
EXPORTED_STANDARD = frozenset({
    "first_name", "last_name", "email", "dob", "home_city", "country", "phone", "language",
    "time_zone", "gender", "email_subscribe", "push_subscribe",
})
# Standard fields /users/track writes but the export does not return: nothing to compare them with.
NOT_EXPORTED_STANDARD = frozenset({
    "image_url", "current_location", "subscription_groups", "date_of_first_session", "date_of_last_session",
    "marked_email_as_spam_at", "email_open_tracking_disabled", "email_click_tracking_disabled",
    "facebook", "twitter", "bio",
})
# Braze reports a subscription state for every user (the default when never set): empty sets no expectation.
DEFAULTED = frozenset({"email_subscribe", "push_subscribe"})
CASE_INSENSITIVE = frozenset({"email"})
# Occurrences this close to the start of the export's event window may fall on either side of it.
WINDOW_SLACK = timedelta(days=1)

KINDS = {
    "user_missing": "Braze has no profile for this external_id",
    "value_missing": "the export has a value, Braze has none",
    "value_unexpected": "the export is empty, Braze has a value",
    "value_different": "Braze holds a different value",
    "tokens_missing": "push tokens of the export are not on the profile",
    "tokens_unexpected": "the profile has push tokens the export gives to no one or to another user",
    "count_lower": "fewer occurrences in Braze than in the export (not loaded yet?)",
    "count_higher": "more occurrences in Braze than in the export (duplicates?)",
    "unread": "Braze gave no answer for this user (retries exhausted): run verify again",
    "deleted_user_exists": "the export's user_deletes lists this user, yet Braze still has the profile",
}
_DATE_LIKE = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}([.:]\d+)?)?\s?(Z|[+-]\d{2}:?\d{2})?)?$")


class MismatchesFound(Exception):
    """The final state's error when sampled users differ: its text is the message, `report` the whole report
    (a Failed state carrying a plain dict makes Prefect log a TypeError with the dict in the run's logs)."""

    def __init__(self, message: str, report: dict | None = None):
        super().__init__(message)
        self.report = report

    def __reduce__(self):
        return type(self), (str(self), self.report)


@dataclass(frozen=True)
class Mismatch:
    """One difference: who, which field, what kind. Never the values."""

    external_id: str
    field: str
    kind: str


@dataclass
class Expectation:
    """What Braze should hold for one sampled user according to the export."""

    external_id: str
    attributes: dict[str, Any] = field(default_factory=dict)  # None: must be absent
    tokens: set[str] | None = None  # None: the export has no push tokens to compare
    ignored_tokens: set[str] = field(default_factory=set)  # held as rejected: neither expected nor unexpected
    purchases: dict[str, tuple[int, int]] = field(default_factory=dict)  # product_id: (fewest, most)
    events: dict[str, tuple[int, int]] = field(default_factory=dict)  # name: (fewest, most)

    def expects_profile(self) -> bool:
        return (
            any(v is not None for v in self.attributes.values())
            or bool(self.tokens)
            or any(low > 0 for low, _ in [*self.purchases.values(), *self.events.values()])
        )


@dataclass
class Expectations:
    """The sample, the export fields to ask for, and how many objects were set aside as already reported."""

    users: list[Expectation]
    fields: list[str]
    excluded: int
    deleted: list[str] = field(default_factory=list)  # sampled ids of user_deletes: Braze must not have them

    def ids(self) -> list[str]:
        """Every external_id to read back: the sampled users, then the sampled deleted ones."""
        return [u.external_id for u in self.users] + [d for d in self.deleted if d not in self._user_ids()]

    def _user_ids(self) -> set[str]:
        return {u.external_id for u in self.users}


@dataclass
class ReadBack:
    """Exported profiles by external_id, plus what reading them cost."""

    profiles: dict[str, dict]
    unread: set[str] = field(default_factory=set)  # Braze gave no answer for them (retries exhausted)
    requests: int = 0
    throttled: int = 0
    retries: int = 0


@dataclass
class VerifyReport:
    """The outcome of one verification: counts and mismatches (ids, fields, kinds)."""

    source: str
    sampled: int
    matched: int
    mismatched: int
    excluded: int
    requests: int
    throttled: int
    retries: int
    mismatches: list[Mismatch]
    deleted_checked: int = 0  # sampled ids of user_deletes read back (each must be absent)

    @property
    def ok(self) -> bool:
        return self.mismatched == 0

    def to_dict(self) -> dict:
        return {**asdict(self), "mismatches": [asdict(m) for m in self.mismatches]}

    def kinds(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for m in self.mismatches:
            counts[m.kind] = counts.get(m.kind, 0) + 1
        return dict(sorted(counts.items()))


def sample_ids(frames: Iterable[pl.LazyFrame], n: int) -> list[str]:
    """The n external_ids with the smallest stable hash (xxh3_64): the same users every night."""
    ids = [f.select("external_id").filter(pl.col("external_id").is_not_null()) for f in frames]
    if not ids or n <= 0:
        return []
    return (
        pl.concat(ids).unique()
        .with_columns(plh.col("external_id").nchash.xxh3_64().alias("__h"))
        .sort(["__h", "external_id"])
        .head(n)
        .collect()["external_id"].to_list()
    )


def build_expectations(source: str, state: str | Path, n: int, *,
                       since: datetime | None = None, mapping: str | None = None) -> Expectations:
    """Normalize the export (with its mapping file, as a load would), sample n users and say what Braze
    should hold for each (see _expectations). A remote source is materialized into a temporary work
    folder while it is read; everything is collected before that folder goes."""
    with tempfile.TemporaryDirectory(prefix="braze-migrate-verify-") as work:
        return _expectations(source, state, n, since=since, mapping=mapping, work_dir=Path(work))


def _expectations(source: str, state: str | Path, n: int, *, since: datetime | None, mapping: str | None,
                  work_dir: Path) -> Expectations:
    """Normalize the export, sample n users and say what Braze should hold for each.

    `since`: Braze's export aggregates events and purchases over a recent window only; older occurrences
    then set no expectation (None: all of them count, as the sandbox does by default).
    """
    data = {name: norm.good for name, (_, norm)
            in normalized_datasets(str(source), mapping=mapping, work_dir=work_dir).items()}
    deleted = _sample_deleted(source, mapping, work_dir, n)
    # A user the export also lists in user_deletes is kept out of loads: it is checked as deleted only.
    gone = pl.LazyFrame({"external_id": deleted}, schema={"external_id": pl.String})
    ids = sample_ids([f.join(gone, on="external_id", how="anti") for f in data.values()], n)
    sample = pl.LazyFrame({"external_id": ids}, schema={"external_id": pl.String})
    held = Snapshot(Path(state)).scan("held")
    users = {eid: Expectation(eid) for eid in ids}
    excluded = 0
    fields = ["external_id"]
    if "users" in data:
        excluded += _expect_attributes(users, data["users"].join(sample, on="external_id", how="semi"), held)
        columns = data["users"].collect_schema().names()
        fields += sorted(c for c in columns if c in EXPORTED_STANDARD) + ["custom_attributes"]
    if "push_tokens" in data:
        tokens = data["push_tokens"].join(sample, on="external_id", how="semi")
        excluded += _expect_tokens(users, tokens, held)
        fields.append("push_tokens")
    for name, label, value in (("purchases", "product_id", "quantity"), ("events", "name", None)):
        if name in data:
            rows = data[name].join(sample, on="external_id", how="semi")
            excluded += _expect_counts(users, rows, held, name, label, value, since)
            fields.append("purchases" if name == "purchases" else "custom_events")
    return Expectations([users[eid] for eid in ids], fields, excluded, deleted)


def _sample_deleted(source: str, mapping: str | None, work_dir: Path, n: int) -> list[str]:
    """Up to n ids of the export's user_deletes (the same ones every night), [] without that dataset."""
    from braze_migrate.ops.deletes import read_deletes

    found = read_deletes(str(source), mapping, work_dir / "deletes")
    return sample_ids([found[0].lazy()], n) if found is not None else []


def _expect_attributes(users: dict[str, Expectation], rows: pl.LazyFrame, held: pl.LazyFrame) -> int:
    """Each attribute's value (None: empty, so absent in Braze), except dropped cells and held users."""
    held_ids = set(held.filter(pl.col("dataset") == "users").select("key").collect()["key"].to_list())
    frame = rows.collect()
    attrs = [c for c in frame.columns if c not in ("external_id", "_dropped") and not c.startswith("_")]
    excluded = 0
    for row in frame.iter_rows(named=True):
        eid = row["external_id"]
        if eid in held_ids:
            excluded += 1
            continue
        dropped = set(row["_dropped"] or ())
        for name in attrs:
            text = row[name]
            if name in dropped or name in NOT_EXPORTED_STANDARD or (text is None and name in DEFAULTED):
                continue
            users[eid].attributes[name] = None if text is None else json.loads(text)
    return excluded


def _expect_tokens(users: dict[str, Expectation], rows: pl.LazyFrame, held: pl.LazyFrame) -> int:
    """The set of tokens each sampled user should own; tokens Braze rejected are left out."""
    held_keys = held.filter(pl.col("dataset") == "push_tokens").select("key", pl.lit(True).alias("__held"))
    frame = rows.with_columns(token_key().alias("key")).join(held_keys, on="key", how="left").select(
        "external_id", "token", pl.col("__held").fill_null(False)).collect()
    for user in users.values():
        user.tokens = set()
    for eid, token, is_held in frame.iter_rows():
        (users[eid].ignored_tokens if is_held else users[eid].tokens).add(token)
    return int(frame["__held"].sum())


def _expect_counts(users: dict[str, Expectation], rows: pl.LazyFrame, held: pl.LazyFrame, dataset: str,
                   label: str, weight: str | None, since: datetime | None) -> int:
    """(fewest, most) occurrences per user and name: in-doubt ones may have landed, rejected ones did not."""
    key = "purchase_id" if dataset == "purchases" else "event_id"
    status = held.filter(pl.col("dataset") == dataset).select(pl.col("key").alias(key), pl.col("status"))
    n = pl.col("object").str.json_path_match(f"$.{weight}").cast(pl.Int64).fill_null(1) if weight \
        else pl.lit(1)
    when = pl.col("object").str.json_path_match("$.time").str.to_datetime(time_zone="UTC", strict=False)
    certain = pl.col("status").is_null()
    if since is not None:
        edge = since.astimezone(UTC)
        certain = certain & (when >= edge + WINDOW_SLACK)
        in_window = pl.col("status").is_null() & (when >= edge - WINDOW_SLACK)
        possible = in_window | (pl.col("status") == HeldReason.IN_DOUBT)
    else:
        possible = certain | (pl.col("status") == HeldReason.IN_DOUBT)
    frame = (
        rows.join(status, on=key, how="left")
        # Braze trims event names and product ids.
        .with_columns(pl.col("object").str.json_path_match(f"$.{label}").str.strip_chars().alias("__name"),
                      n.alias("__n"))
        .group_by("external_id", "__name")
        .agg(
            pl.col("__n").filter(certain).sum().alias("low"),
            pl.col("__n").filter(possible).sum().alias("high"),
            (pl.col("status") == HeldReason.REJECTED).sum().alias("rejected"),
        )
        .sort("external_id", "__name")
        .collect()
    )
    for eid, name, low, high, _ in frame.iter_rows():
        counts = users[eid].purchases if dataset == "purchases" else users[eid].events
        counts[name] = (int(low), int(high))
    return int(frame["rejected"].sum())


def read_profiles(endpoint: str, api_key: str, ids: list[str], fields: list[str], *,
                  transport: httpx.AsyncBaseTransport | None = None, sleep=None) -> ReadBack:
    """Export the users with the client's exporter: ≤50 ids per request, within the export endpoint's own
    rate limit, transient failures retried (a read may always be retried)."""
    exporter = BrazeExporter(endpoint, api_key, transport=transport, sleep=sleep)
    result = exporter.export_users_sync(ids, fields)
    wanted = set(ids)
    profiles = {key: u for key, u in result.by_key.items() if key in wanted}
    return ReadBack(profiles, unread=set(result.pending_ids), requests=result.requests,
                    throttled=result.throttled, retries=result.retries)


def compare_user(expected: Expectation, profile: dict | None) -> list[Mismatch]:
    """Every way the exported profile differs from the expectation (empty when it matches)."""
    eid = expected.external_id
    if profile is None:
        return [Mismatch(eid, "profile", "user_missing")] if expected.expects_profile() else []
    found: list[Mismatch] = []
    custom = profile.get("custom_attributes") or {}
    for name, want in expected.attributes.items():
        have = profile.get(name) if name in EXPORTED_STANDARD else custom.get(braze_name(name))
        kind = _value_kind(want, have, casefold=name in CASE_INSENSITIVE)
        if kind:
            found.append(Mismatch(eid, name, kind))
    if expected.tokens is not None:
        have = {t.get("token") for t in profile.get("push_tokens") or () if isinstance(t, dict)}
        have -= expected.ignored_tokens
        if expected.tokens - have:
            found.append(Mismatch(eid, "push_tokens", "tokens_missing"))
        if have - expected.tokens:
            found.append(Mismatch(eid, "push_tokens", "tokens_unexpected"))
    for label, wanted, exported in (("purchases", expected.purchases, profile.get("purchases")),
                                    ("events", expected.events, profile.get("custom_events"))):
        if exported is None and not wanted:
            continue
        counts = {a.get("name"): a.get("count") or 0 for a in exported or () if isinstance(a, dict)}
        for name in sorted(set(wanted) | set(counts)):
            low, high = wanted.get(name, (0, 0))
            count = counts.get(name, 0)
            if count < low:
                found.append(Mismatch(eid, f"{label}:{name}", "count_lower"))
            elif count > high:
                found.append(Mismatch(eid, f"{label}:{name}", "count_higher"))
    return found


def _value_kind(want: Any, have: Any, *, casefold: bool = False) -> str | None:
    if want is None:
        return None if _empty(have) else "value_unexpected"
    if _empty(have):
        return None if want == [] else "value_missing"  # an empty array of objects is set as []
    return None if same_value(want, have, casefold=casefold) else "value_different"


def _empty(value: Any) -> bool:
    return value is None or value == [] or value == ""


def same_value(want: Any, have: Any, *, casefold: bool = False) -> bool:
    """Equal as Braze means it: dates as instants, numbers as numbers, arrays as sets, text trimmed."""
    if isinstance(want, bool) or isinstance(have, bool):
        return isinstance(want, bool) and isinstance(have, bool) and want == have
    if isinstance(want, (int, float)) and isinstance(have, (int, float)):
        return math.isclose(want, have, rel_tol=1e-9, abs_tol=1e-9)
    want_t, have_t = instant(want), instant(have)
    if want_t is not None or have_t is not None:
        return want_t == have_t
    if isinstance(want, str) and isinstance(have, str):
        a, b = want.strip(), have.strip()
        return a.casefold() == b.casefold() if casefold else a == b
    if isinstance(want, list) and isinstance(have, list):
        return _as_set(want) == _as_set(have)
    if isinstance(want, dict) and isinstance(have, dict):
        return want.keys() == have.keys() and all(same_value(want[k], have[k]) for k in want)
    return False


def instant(value: Any) -> datetime | None:
    """The UTC instant of an ISO 8601 text or a `{"$time": ...}` object (a date is its midnight UTC)."""
    if isinstance(value, dict) and set(value) == {"$time"}:
        value = value["$time"]
    if not isinstance(value, str) or not _DATE_LIKE.match(value.strip()):
        return None
    text = value.strip()
    if len(text) == 10:
        d = date.fromisoformat(text)
        return datetime(d.year, d.month, d.day, tzinfo=UTC)
    text = re.sub(r"(\d{2}:\d{2}:\d{2}):(\d{3})", r"\1.\2", text)  # Braze's `HH:mm:ss:SSS` variant
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "T", 1))
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _as_set(values: list) -> set[str]:
    """Array elements by canonical form (Braze arrays hold unique values; order is not compared)."""
    out = set()
    for v in values:
        t = instant(v)
        if t is not None:
            out.add(t.isoformat())
        elif isinstance(v, str):
            out.add(json.dumps(v.strip()))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out.add(repr(float(v)))
        else:
            out.add(json.dumps(v, sort_keys=True))
    return out


def compare(source: str, expectations: Expectations, read: ReadBack) -> VerifyReport:
    """The report over the whole sample."""
    mismatches: list[Mismatch] = []
    mismatched = 0
    for user in expectations.users:
        if user.external_id in read.unread:
            found = [Mismatch(user.external_id, "profile", "unread")]
        else:
            found = compare_user(user, read.profiles.get(user.external_id))
        mismatches += found
        mismatched += bool(found)
    for eid in expectations.deleted:
        if eid in read.unread:
            mismatches.append(Mismatch(eid, "profile", "unread"))
        elif eid in read.profiles:
            mismatches.append(Mismatch(eid, "profile", "deleted_user_exists"))
        else:
            continue
        mismatched += 1
    sampled = len(expectations.users) + len(expectations.deleted)
    return VerifyReport(
        source=str(source), sampled=sampled, matched=sampled - mismatched, mismatched=mismatched,
        excluded=expectations.excluded, requests=read.requests, throttled=read.throttled,
        retries=read.retries,
        # A user named by email or phone is shown as `email`/`phone` only: no personal data leaves verify.
        mismatches=[dataclasses.replace(m, external_id=display_key(m.external_id)) for m in mismatches],
        deleted_checked=len(expectations.deleted),
    )


def render_text(report: VerifyReport) -> str:
    """The human summary printed by `braze-migrate verify`."""
    lines = [
        f"verify {report.source}: {'OK' if report.ok else 'MISMATCHES'}",
        (f"  sampled {report.sampled}  matched {report.matched}  mismatched {report.mismatched}  "
        f"set aside (rejected by Braze or in doubt) {report.excluded}  export requests {report.requests}"),
    ]
    if report.deleted_checked:
        lines.append(f"  deleted users checked (user_deletes) {report.deleted_checked}")
    if report.mismatches:
        lines.append(f"  {'external_id':<24}{'field':<32}kind")
        lines += [f"  {m.external_id:<24}{m.field:<32}{m.kind}" for m in report.mismatches]
        lines.append("  kinds: " + "; ".join(f"{k} = {KINDS[k]}" for k in report.kinds()))
    return "\n".join(lines)


def since_days(days: int | None, now: datetime | None = None) -> datetime | None:
    """The start of an export window of `days` days ending now (None: no window)."""
    if days is None:
        return None
    return (now or datetime.now(UTC)) - timedelta(days=days)


def verify(source: str, state: str | Path, sample: int, *, endpoint: str, api_key: str,
           since: datetime | None = None, mapping: str | None = None,
           transport: httpx.AsyncBaseTransport | None = None) -> VerifyReport:
    """Sample, read back, compare: the whole verification without Prefect."""
    expectations = build_expectations(source, state, sample, since=since, mapping=mapping)
    read = read_profiles(endpoint, api_key, expectations.ids(), expectations.fields, transport=transport)
    return compare(source, expectations, read)
