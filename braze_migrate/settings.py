"""Typed settings, resolved once at the edge (CLI or flow) and passed down explicitly."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

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


LOAD_COMMANDS = ("backfill", "sync")
PLAN_COMMANDS = (*LOAD_COMMANDS, "plan")


def option(default: Any, help: str, *, commands: tuple[str, ...] = LOAD_COMMANDS, flow: bool = True,
           **constraints: Any) -> Any:
    """One option, defined once: its default, its help, the CLI sub-commands that take it as a flag
    (`--name-with-dashes`; none for secrets) and whether the load flows take it as a parameter. The environment
    variable is BRAZE_MIGRATE_<NAME>; the flags, flow parameters and prefect.yaml are checked against this."""
    return Field(default, description=help, json_schema_extra={"commands": list(commands), "flow": flow},
                 **constraints)


class LoadSettings(BaseSettings):
    """How a run plans and loads: the one options model (CLI flags and flow parameters come from it).
    Limits are settings because Braze has changed them under loaders.

    To add an option: add a field here with `option(...)`, then give it a value in prefect.yaml's load
    deployments or list it in tests/test_options.py's NOT_IN_PREFECT_YAML (the test says which)."""

    model_config = SettingsConfigDict(env_prefix="BRAZE_MIGRATE_", extra="ignore")

    state: Path = option(Path("state"), "state folder: the ledger, snapshot, plans and rejects files",
                         commands=(*PLAN_COMMANDS, "status", "verify", "load-worker", "repair", "settle", "undelete"))
    rate_limit: str = option("3000/3s", "requests per period, e.g. 3000/3s (Braze's default for /users/track)")
    batch_size: int = option(75, "objects per request", commands=PLAN_COMMANDS, ge=1, le=1000)
    batch_mode: Literal["combined", "per_array"] = option(
        "combined", "the batch size counts all arrays together (combined) or each array (per_array: legacy contracts)",
        commands=PLAN_COMMANDS)
    # Requests in flight: Braze's 1,000 requests/s at ~100 ms latency needs about 100.
    concurrency: int = option(100, "requests in flight at once", commands=(*LOAD_COMMANDS, "load-worker"),
                              ge=1, le=512)
    in_doubt: Literal["resend", "skip"] = option(
        "skip", "events/purchases whose request may have landed: hold as pending (skip) or resend",
        commands=PLAN_COMMANDS)
    max_attempts: int = option(6, "attempts per request before its batch is left pending", ge=1, le=50)
    max_retry_seconds: float = option(300.0, "seconds of retrying per request before its batch is left pending",
                                      gt=0)
    timeout_seconds: float = option(30.0, "seconds to wait for Braze's answer to one request", gt=0)
    retry_backoff_seconds: float = option(1.0, "first backoff between retries, in seconds (it doubles)",
                                          gt=0, le=60)
    users_per_partition: int = option(100_000, "users planned per partition (bounds the planner's memory)",
                                      commands=PLAN_COMMANDS, ge=1)
    # Guard rails (braze_migrate/plan/guards.py): a broken export is held before anything is sent. The defaults catch
    # an emptied or rewritten column, or a dataset that lost rows, but not a normal night.
    accept: list[str] = option([], "guard figures to accept for this run: columns (email,loyalty_tier) or "
                               "datasets (rows:purchases) that the guards held", commands=LOAD_COMMANDS)
    guard_unset_share: float = option(0.05, "hold when a plan would unset more than this share of a column's users",
                                      commands=PLAN_COMMANDS, ge=0, le=1)
    guard_changed_share: float = option(0.5, "hold when a plan would change more than this share of a column's "
                                        "users", commands=PLAN_COMMANDS, ge=0, le=1)
    guard_min_users: int = option(100, "columns held by fewer users are not judged", commands=PLAN_COMMANDS, ge=0)
    guard_rows_drop_share: float = option(0.2, "hold when a dataset has this share fewer rows than the last "
                                          "acknowledged export", commands=PLAN_COMMANDS, ge=0, le=1)
    guard_min_rows: int = option(100, "datasets with fewer rows last time are not judged", commands=PLAN_COMMANDS,
                                 ge=0)
    decision_timeout: int = option(6 * 3600, "seconds a deployment run held for a decision waits for an answer in "
                                   "the Prefect UI before it ends Failed, sending nothing (a CLI run never waits: "
                                   "it exits with the command that decides)", ge=1)
    strict: bool = option(False, "a file of the export folder that is not read is an error, not a warning",
                          commands=PLAN_COMMANDS)
    suspicious: Literal["hold", "send"] = option(
        "hold", "suspicious rows (conflicting duplicate ids, times after the horizon, impossible dob): hold them "
        "(not sent) or send them; both are listed in the rejects file", commands=PLAN_COMMANDS)
    time_horizon_year: int = option(2100, "an event or purchase time after this year is suspicious",
                                    commands=PLAN_COMMANDS, ge=1970)
    auto_settle: bool = option(True, "before a run, read back from Braze the users of events/purchases held in "
                               "doubt and settle the batches the answers decide (needs users.export.ids)",
                               commands=LOAD_COMMANDS)
    accept_type_change: list[str] = option(
        [], "attributes that may take another type than the one Braze acknowledged (a deliberate change); "
        "otherwise a cell of another type is rejected", commands=LOAD_COMMANDS)
    # Tonight's export (connectors/readiness.py): read the folder only once the warehouse says it is complete.
    ready_marker: str = option(
        "", "file that tells the export is complete: a flag (_SUCCESS) or a manifest (a name ending in .json, "
        "listing files, row counts and sha256, which are checked); empty: read the source as it is")
    ready_deadline: int = option(7200, "seconds to wait for the readiness marker before the run ends Failed", ge=0)
    ready_poll_seconds: float = option(30.0, "seconds between two looks for the readiness marker", gt=0)
    skip_unchanged: bool = option(True, "an export identical to the last completed run's (same fingerprint) is "
                                  "not planned again: the run completes, sending nothing, 'unchanged since run X'")
    # Purchases as Braze's eCommerce recommended events (transforms/ecommerce.py): one ecommerce.order_placed per
    # order instead of one purchase object per row; order_refunds and order_cancellations are read then too.
    purchases_as: Literal["purchases", "ecommerce"] = option(
        "purchases", "send purchases as legacy purchase objects (one per row) or as eCommerce events "
        "(one ecommerce.order_placed per order_id)", commands=PLAN_COMMANDS)
    order_source: str = option("warehouse", "the `source` of an eCommerce event whose export row gives none",
                               commands=PLAN_COMMANDS, min_length=1)
    # Identities (docs/identity.md): Braze's /users/track updates an existing alias-only user by default and
    # creates none; external_id, email and phone create the user they name when it does not exist.
    create_alias_users: bool = option(
        False, "objects naming a user by alias (alias_name, alias_label) create that user when Braze has none "
        "(\"_update_existing_only\": false); off: Braze's default, update existing alias users only",
        commands=PLAN_COMMANDS)
    # Request bodies hold personal data (braze_migrate/ops/retention.py, docs/state.md).
    plan_retention_days: float = option(0.0, "days the request bodies of a committed run's plan are kept "
                                        "(they hold personal data); 0 removes them at commit", ge=0)
    # User deletes (braze_migrate/ops/deletes.py): /users/delete has its own limit and a guard against mass deletes.
    delete_rate_limit: str = option("20000/60s", "requests per period to /users/delete (Braze: 20,000/min)")
    delete_max_count: int = option(1000, "hold a run's deletes when they name more users than this", ge=0)
    delete_max_share: float = option(0.1, "hold a run's deletes when they name more than this share of the "
                                     "acknowledged users", ge=0)
    allow_mass_delete: bool = option(False, "send this run's deletes even over their guards (users: "
                                     "delete_max_count/delete_max_share; catalog items: catalog_delete_max_share)")
    # Catalogs (braze_migrate/ops/catalogs.py): `catalogs/<name>` datasets synced to Braze's catalog item endpoints.
    catalog_rate_limit: str = option("16000/60s", "requests per period to the catalog item endpoints (Braze: "
                                     "16,000/min shared by them)")
    catalog_deletes: bool = option(False, "delete catalog items that the export no longer has (otherwise they are "
                                   "kept in Braze and counted)", commands=PLAN_COMMANDS)
    catalog_delete_max_share: float = option(0.1, "hold catalog deletes over this share of a catalog's acknowledged "
                                             "items (--allow-mass-delete sends them)", commands=PLAN_COMMANDS,
                                             ge=0, le=1)
    # Identity requests (braze_migrate/ops/identities.py): `identifies` (/users/identify shares the delete limit)
    # and `external_id_renames` (/users/external_ids/rename and /remove: 1,000/min), guarded like deletes.
    rename_rate_limit: str = option("1000/60s", "requests per period to /users/external_ids/rename and /remove "
                                    "(Braze: 1,000/min)")
    identity_max_count: int = option(1000, "hold a run's identifies and renames when they name more users than "
                                     "this", ge=0)
    identity_max_share: float = option(0.1, "hold a run's identifies and renames when they name more than this "
                                       "share of the acknowledged users", ge=0)
    allow_mass_identity: bool = option(False, "send this run's identifies and renames even over "
                                       "identity_max_count/identity_max_share")
    remove_deprecated_ids: bool = option(False, "after a rename, remove the old (deprecated) external_id with "
                                         "/users/external_ids/remove (never /users/delete, which deletes the user)")
    # Verification (`braze-migrate verify`, the `verify` flow and deployment), not the load flows.
    sample: int = option(200, "users to compare (the same users every time)", commands=("verify",), flow=False,
                         ge=1)
    event_window_days: int | None = option(
        None, "compare event and purchase counts over the last N days only (Braze's export aggregates 90 days); "
              "unset: all occurrences, as the sandbox keeps them", commands=("verify",), flow=False, ge=1)
    # The ledger in PostgreSQL (postgresql://...), shared by workers on several machines; unset: SQLite in
    # the state folder. A secret (it may hold a password): environment only, never a flag or flow parameter.
    ledger_url: SecretStr | None = option(None, "PostgreSQL ledger URL (postgresql://...) shared by workers",
                                          commands=(), flow=False)

    @field_validator("rate_limit", "catalog_rate_limit", "rename_rate_limit")
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


def flag_options(command: str) -> list[str]:
    """The options the CLI sub-command `command` takes as flags, in model order."""
    return [name for name, f in LoadSettings.model_fields.items() if command in _extra(f)["commands"]]


def flow_options() -> list[str]:
    """The options every load flow takes as parameters, in model order (secrets are not among them)."""
    return [name for name, f in LoadSettings.model_fields.items() if _extra(f)["flow"]]


def public_options(settings: LoadSettings) -> dict[str, Any]:
    """The flow options of `settings` as plain JSON values: what a task or a worker process receives
    (secrets stay in each process's environment)."""
    data = settings.model_dump(mode="json", include=set(flow_options()))
    return {name: data[name] for name in flow_options()}


def _extra(f) -> dict:
    return f.json_schema_extra or {"commands": [], "flow": False}
