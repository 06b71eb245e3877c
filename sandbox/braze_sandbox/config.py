"""Settings of one sandbox server, and the parsers of its rate strings ("3000/3s")."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field

MODES = ("combined75", "per_array75", "combined50")

FAULT_FIELDS = ("fail_rate", "applied_then_fail_rate", "reset_rate", "storm_rate", "latency_ms", "seed")

_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*\.?\d*)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


@dataclass(frozen=True)
class Rate:
    """A fixed-window budget: `limit` requests per `period` seconds."""

    limit: int
    period: float


def parse_rate(text: str) -> Rate:
    """Parse "3000/3s", "250/60s", "250/1m", "5/200ms" or "100000/1h" into a Rate."""
    match = _RATE.match(text or "")
    if not match:
        raise ValueError(f"bad rate {text!r}: expected LIMIT/PERIOD such as 3000/3s or 250/1m")
    limit, amount, unit = match.groups()
    period = (float(amount) if amount not in ("", ".") else 1.0) * _UNIT_SECONDS[unit]
    if int(limit) < 1 or period <= 0:
        raise ValueError(f"bad rate {text!r}: limit and period must be positive")
    return Rate(int(limit), period)


def parse_mau_policy(text: str) -> tuple[Rate, Rate]:
    """Parse the MAU-contract policy "HOURLY+BURST", e.g. "100000/1h+500/3s", into (hourly, burst)."""
    parts = [p for p in re.split(r"[+,]", text or "") if p.strip()]
    if len(parts) != 2:
        raise ValueError(f"bad MAU policy {text!r}: expected HOURLY+BURST such as 100000/1h+500/3s")
    return parse_rate(parts[0]), parse_rate(parts[1])


@dataclass
class SandboxConfig:
    """Everything that shapes the sandbox's behaviour; every Braze limit is a setting (braze-api.md).

    Rates read "LIMIT/PERIOD" (`3000/3s`, `250/1m`, `5/200ms`); `mau_policy` "HOURLY+BURST"
    (`100000/1h+500/3s`) replaces `rate_limit` with the MAU-contract policy. `mode` is the
    object-count contract: `combined75`, `per_array75` or `combined50`.
    Fault rates are probabilities per `/users/track` request, drawn from one RNG seeded by `seed`.
    `push_apps` maps known app ids to their platform (`ios`, `android`, `web`); when empty any app id
    is accepted and the platform is guessed from the token. `export_event_window_days` limits the
    export's event and purchase aggregates to recent occurrences (Braze: 90); None keeps all.
    """

    api_key: str = "sandbox-key"
    rate_limit: str = "3000/3s"
    mode: str = "combined75"
    export_rate_limit: str = "250/60s"
    delete_rate_limit: str = "20000/60s"
    delete_max_ids: int = 50
    catalog_rate_limit: str = "16000/60s"  # shared by the asynchronous catalog item endpoints (catalogs.py)
    catalog_max_items: int = 50
    # Test hook: added to every answer of the identity endpoints (identity.py) after the request is applied, so
    # a client can be stopped while Braze holds a request it already carried out.
    identity_latency_ms: int = 0
    identity_latency_path: str | None = None  # only this identity endpoint is held back (all when None)
    mau_policy: str | None = None
    fail_rate: float = 0.0
    applied_then_fail_rate: float = 0.0
    reset_rate: float = 0.0
    storm_rate: float = 0.0
    latency_ms: int = 0
    seed: int = 0
    db_path: str | None = None
    max_body_bytes: int = 4 * 1024 * 1024
    max_array_length: int = 500
    max_string_length: int = 255
    export_max_ids: int = 50
    export_requires_fields: bool = True
    export_event_window_days: int | None = None
    push_apps: dict[str, str] = field(default_factory=dict)
    blocked_external_ids: tuple[str, ...] = ("null", "undefined", "none", "nil", "n/a", "[object object]")
    flush_interval_s: float = 0.2

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Fail early, at the edge, on a setting the server could not honour."""
        if self.mode not in MODES:
            raise ValueError(f"bad mode {self.mode!r}: expected one of {', '.join(MODES)}")
        parse_rate(self.rate_limit)
        parse_rate(self.export_rate_limit)
        parse_rate(self.delete_rate_limit)
        parse_rate(self.catalog_rate_limit)
        if self.mau_policy:
            parse_mau_policy(self.mau_policy)
        for name in ("fail_rate", "applied_then_fail_rate", "reset_rate", "storm_rate"):
            value = getattr(self, name)
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"bad {name} {value!r}: expected a probability in [0, 1]")
        if self.latency_ms < 0:
            raise ValueError("latency_ms must be >= 0")
        for app_id, platform in self.push_apps.items():
            if platform not in ("ios", "android", "web"):
                raise ValueError(f"bad platform {platform!r} for app {app_id!r}: ios, android or web")

    def replace(self, **changes) -> SandboxConfig:
        """A copy with some settings changed (validated like the original)."""
        return dataclasses.replace(self, **changes)

    def public_dict(self) -> dict:
        """The settings without the API key, for `/_sandbox/config` and logs."""
        data = dataclasses.asdict(self)
        data.pop("api_key")
        data["blocked_external_ids"] = list(self.blocked_external_ids)
        return data
