"""Typed settings, resolved once at the edge (CLI or flow) and passed down explicitly."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ConfigError(Exception):
    """Bad or missing configuration: the message says what to set; never a traceback for the user."""


class BrazeSettings(BaseSettings):
    """Where Braze is and the key to reach it (environment: BRAZE_REST_ENDPOINT, BRAZE_API_KEY)."""

    model_config = SettingsConfigDict(env_prefix="BRAZE_", extra="ignore")

    rest_endpoint: str | None = None
    api_key: SecretStr | None = None

    def require(self) -> tuple[str, str]:
        """Endpoint and key, or one ConfigError line naming every missing variable."""
        missing = [name for name, v in (("BRAZE_REST_ENDPOINT", self.rest_endpoint),
                                        ("BRAZE_API_KEY", self.api_key)) if not v]
        if missing:
            raise ConfigError(
                f"missing {' and '.join(missing)}: set {' and '.join(missing)} in the environment "
                "(e.g. BRAZE_REST_ENDPOINT=https://rest.iad-01.braze.com BRAZE_API_KEY=...)"
            )
        endpoint = self.rest_endpoint.strip().rstrip("/")
        if not re.match(r"^https?://[^/\s]+", endpoint):
            raise ConfigError(
                f"BRAZE_REST_ENDPOINT must be an http(s) URL such as https://rest.iad-01.braze.com, "
                f"not {endpoint!r}"
            )
        return endpoint, self.api_key.get_secret_value()


class LoadSettings(BaseSettings):
    """How a run plans and loads: limits are settings because Braze has changed them under loaders."""

    model_config = SettingsConfigDict(env_prefix="BRAZE_MIGRATE_", extra="ignore")

    state: Path = Path("state")
    rate_limit: str = "3000/3s"
    batch_size: int = Field(75, ge=1, le=1000)
    batch_mode: Literal["combined", "per_array"] = "combined"
    # Requests in flight: Braze's 1,000 requests/s at ~100 ms latency needs about 100.
    concurrency: int = Field(100, ge=1, le=512)
    in_doubt: Literal["resend", "skip"] = "skip"
    max_attempts: int = Field(6, ge=1, le=50)
    max_retry_seconds: float = Field(300.0, gt=0)
    timeout_seconds: float = Field(30.0, gt=0)
    retry_backoff_seconds: float = Field(1.0, gt=0, le=60)
    users_per_partition: int = Field(100_000, ge=1)
    # The ledger in PostgreSQL (postgresql://...), shared by workers on several machines; unset: SQLite in
    # the state folder. A secret: it may hold a password.
    ledger_url: SecretStr | None = None

    @field_validator("rate_limit")
    @classmethod
    def _check_rate(cls, v: str) -> str:
        from connectors.braze.ratelimit import parse_rate

        parse_rate(v)
        return v

    @field_validator("ledger_url")
    @classmethod
    def _check_ledger_url(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and not v.get_secret_value().startswith(("postgresql://", "postgres://")):
            raise ValueError("BRAZE_MIGRATE_LEDGER_URL must be a postgresql:// URL")
        return v


def load_settings(**overrides) -> LoadSettings:
    """LoadSettings from the environment plus explicit overrides, with errors as ConfigError lines."""
    clean = {k: v for k, v in overrides.items() if v is not None}
    try:
        return LoadSettings(**clean)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "settings"
        raise ConfigError(f"invalid setting --{field.replace('_', '-')}: {first['msg']}") from None
