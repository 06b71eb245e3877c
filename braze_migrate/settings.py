"""Typed settings, resolved once at the edge (CLI or flow) and passed down explicitly."""

from __future__ import annotations

import copy
import functools
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, create_model, field_validator
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


# The sections of the flows' options: each is one parameter of the load flows (a typed model generated from the
# options tagged with it, below), shown as one group in the Prefect UI's Parameters tab and custom-run form, and
# one nested mapping of a deployment's parameters in prefect.yaml. In this order.
SECTIONS: dict[str, str] = {
    "requests": "Requests: the rate limit of /users/track, batching, requests in flight and their time-out",
    "retries": "Retries: how long a request is retried, and what is done with requests that may have landed",
    "guards": "Guards: the figures that hold a plan before anything is sent, and how long a held run waits",
    "readiness": "Readiness: wait for the export's completion marker; an unchanged export is not sent again",
    "rows": "Rows: how the export is read and planned, and what is done with suspicious rows and cells",
    "ecommerce": "eCommerce: purchases as legacy purchase objects or as eCommerce recommended events",
    "identity": "Identity: alias users, identifies and external_id renames, and their guards",
    "deletes": "Deletes: the rate limit of /users/delete and the guards against mass deletes",
    "catalogs": "Catalogs: the catalog item endpoints' rate limit, catalog deletes and their guard",
    "retention": "Retention: how long the request bodies of a committed run's plan are kept",
    "verify": "Verify: how many users the verify flow compares, and over which window",
}


def option(default: Any, help: str, *, section: str | None, commands: tuple[str, ...] = LOAD_COMMANDS,
           flow: bool = True, **constraints: Any) -> Any:
    """One option, defined once: its default, its help, its section of the flows' parameters (`SECTIONS`; None:
    a top-level parameter, or a secret), the CLI sub-commands that take it as a flag (`--name-with-dashes`; none
    for secrets) and whether the load flows take it. The environment variable is BRAZE_MIGRATE_<NAME>; the flags,
    the flows' parameters and prefect.yaml are generated from or checked against this."""
    if section is not None and section not in SECTIONS:
        raise ValueError(f"unknown section {section!r}: add it to SECTIONS")
    return Field(default, description=help,
                 json_schema_extra={"commands": list(commands), "flow": flow, "section": section}, **constraints)


class LoadSettings(BaseSettings):
    """How a run plans and loads: the one options model (CLI flags and flow parameters come from it).
    Limits are settings because Braze has changed them under loaders.

    To add an option: add a field here with `option(...)` in its section; it becomes a CLI flag, a field of its
    section's parameter in the flows and their forms; then give it a value in prefect.yaml's load deployments or
    list it in tests/test_options.py's NOT_IN_PREFECT_YAML (the test says which).

    The ledger URL is a secret: a LoadSettings sent to another process (a task on a Dask worker) leaves it
    behind, and the receiving process takes its own from its environment (`__getstate__`)."""

    model_config = SettingsConfigDict(env_prefix="BRAZE_MIGRATE_", extra="ignore")

    state: Path = option(Path("state"), "state folder: the ledger, snapshot, plans and rejects files",
                         commands=(*PLAN_COMMANDS, "status", "verify", "load-worker", "repair", "settle", "undelete"),
                         section=None)
    rate_limit: str = option("3000/3s", "requests per period, e.g. 3000/3s (Braze's default for /users/track)",
                             section="requests")
    batch_size: int = option(75, "objects per request", commands=PLAN_COMMANDS, ge=1, le=1000,
                             section="requests")
    batch_mode: Literal["combined", "per_array"] = option(
        "combined", "the batch size counts all arrays together (combined) or each array (per_array: legacy contracts)",
        commands=PLAN_COMMANDS, section="requests")
    # Requests in flight: Braze's 1,000 requests/s at ~100 ms latency needs about 100.
    concurrency: int = option(100, "requests in flight at once", commands=(*LOAD_COMMANDS, "load-worker"),
                              ge=1, le=512, section="requests")
    in_doubt: Literal["resend", "skip"] = option(
        "skip", "events/purchases whose request may have landed: hold as pending (skip) or resend",
        commands=PLAN_COMMANDS, section="retries")
    max_attempts: int = option(6, "attempts per request before its batch is left pending", ge=1, le=50,
                               section="retries")
    max_retry_seconds: float = option(300.0, "seconds of retrying per request before its batch is left pending",
                                      gt=0, section="retries")
    timeout_seconds: float = option(30.0, "seconds to wait for Braze's answer to one request", gt=0,
                                    section="requests")
    retry_backoff_seconds: float = option(1.0, "first backoff between retries, in seconds (it doubles)",
                                          gt=0, le=60, section="retries")
    users_per_partition: int = option(100_000, "users planned per partition (bounds the planner's memory)",
                                      commands=PLAN_COMMANDS, ge=1, section="rows")
    # Guard rails (braze_migrate/plan/guards.py): a broken export is held before anything is sent. The defaults catch
    # an emptied or rewritten column, or a dataset that lost rows, but not a normal night.
    accept: list[str] = option([], "guard figures to accept for this run: columns (email,loyalty_tier) or "
                               "datasets (rows:purchases) that the guards held", commands=LOAD_COMMANDS,
                               section="guards")
    guard_unset_share: float = option(0.05, "hold when a plan would unset more than this share of a column's users",
                                      commands=PLAN_COMMANDS, ge=0, le=1, section="guards")
    guard_changed_share: float = option(0.5, "hold when a plan would change more than this share of a column's "
                                        "users", commands=PLAN_COMMANDS, ge=0, le=1, section="guards")
    guard_min_users: int = option(100, "columns held by fewer users are not judged", commands=PLAN_COMMANDS, ge=0,
                                  section="guards")
    guard_rows_drop_share: float = option(0.2, "hold when a dataset has this share fewer rows than the last "
                                          "acknowledged export", commands=PLAN_COMMANDS, ge=0, le=1,
                                          section="guards")
    guard_min_rows: int = option(100, "datasets with fewer rows last time are not judged", commands=PLAN_COMMANDS,
                                 ge=0, section="guards")
    decision_timeout: int = option(6 * 3600, "seconds a deployment run held for a decision waits for an answer in "
                                   "the Prefect UI before it ends Failed, sending nothing (a CLI run never waits: "
                                   "it exits with the command that decides)", ge=1, section="guards")
    strict: bool = option(False, "a file of the export folder that is not read is an error, not a warning",
                          commands=PLAN_COMMANDS, section="rows")
    suspicious: Literal["hold", "send"] = option(
        "hold", "suspicious rows (conflicting duplicate ids, times after the horizon, impossible dob): hold them "
        "(not sent) or send them; both are listed in the rejects file", commands=PLAN_COMMANDS,
        section="rows")
    time_horizon_year: int = option(2100, "an event or purchase time after this year is suspicious",
                                    commands=PLAN_COMMANDS, ge=1970, section="rows")
    auto_settle: bool = option(True, "before a run, read back from Braze the users of events/purchases held in "
                               "doubt and settle the batches the answers decide (needs users.export.ids)",
                               commands=LOAD_COMMANDS, section="retries")
    accept_type_change: list[str] = option(
        [], "attributes that may take another type than the one Braze acknowledged (a deliberate change); "
        "otherwise a cell of another type is rejected", commands=LOAD_COMMANDS, section="rows")
    # Tonight's export (connectors/readiness.py): read the folder only once the warehouse says it is complete.
    ready_marker: str = option(
        "", "file that tells the export is complete: a flag (_SUCCESS) or a manifest (a name ending in .json, "
        "listing files, row counts and sha256, which are checked); empty: read the source as it is",
        section="readiness")
    ready_deadline: int = option(7200, "seconds to wait for the readiness marker before the run ends Failed", ge=0,
                                 section="readiness")
    ready_poll_seconds: float = option(30.0, "seconds between two looks for the readiness marker", gt=0,
                                       section="readiness")
    skip_unchanged: bool = option(True, "an export identical to the last completed run's (same fingerprint) is "
                                  "not planned again: the run completes, sending nothing, 'unchanged since run X'",
                                  section="readiness")
    # Purchases as Braze's eCommerce recommended events (transforms/ecommerce.py): one ecommerce.order_placed per
    # order instead of one purchase object per row; order_refunds and order_cancellations are read then too.
    purchases_as: Literal["purchases", "ecommerce"] = option(
        "purchases", "send purchases as legacy purchase objects (one per row) or as eCommerce events "
        "(one ecommerce.order_placed per order_id)", commands=PLAN_COMMANDS, section="ecommerce")
    order_source: str = option("warehouse", "the `source` of an eCommerce event whose export row gives none",
                               commands=PLAN_COMMANDS, min_length=1, section="ecommerce")
    # Identities (docs/identity.md): Braze's /users/track updates an existing alias-only user by default and
    # creates none; external_id, email and phone create the user they name when it does not exist.
    create_alias_users: bool = option(
        False, "objects naming a user by alias (alias_name, alias_label) create that user when Braze has none "
        "(\"_update_existing_only\": false); off: Braze's default, update existing alias users only",
        commands=PLAN_COMMANDS, section="identity")
    # Request bodies hold personal data (braze_migrate/ops/retention.py, docs/state.md).
    plan_retention_days: float = option(0.0, "days the request bodies of a committed run's plan are kept "
                                        "(they hold personal data); 0 removes them at commit", ge=0,
                                        section="retention")
    # User deletes (braze_migrate/ops/deletes.py): /users/delete has its own limit and a guard against mass deletes.
    delete_rate_limit: str = option("20000/60s", "requests per period to /users/delete (Braze: 20,000/min)",
                                    section="deletes")
    delete_max_count: int = option(1000, "hold a run's deletes when they name more users than this", ge=0,
                                   section="deletes")
    delete_max_share: float = option(0.1, "hold a run's deletes when they name more than this share of the "
                                     "acknowledged users", ge=0, section="deletes")
    allow_mass_delete: bool = option(False, "send this run's deletes even over their guards (users: "
                                     "delete_max_count/delete_max_share; catalog items: catalog_delete_max_share)",
                                     section="deletes")
    # Catalogs (braze_migrate/ops/catalogs.py): `catalogs/<name>` datasets synced to Braze's catalog item endpoints.
    catalog_rate_limit: str = option("16000/60s", "requests per period to the catalog item endpoints (Braze: "
                                     "16,000/min shared by them)", section="catalogs")
    catalog_deletes: bool = option(False, "delete catalog items that the export no longer has (otherwise they are "
                                   "kept in Braze and counted)", commands=PLAN_COMMANDS, section="catalogs")
    catalog_delete_max_share: float = option(0.1, "hold catalog deletes over this share of a catalog's acknowledged "
                                             "items (--allow-mass-delete sends them)", commands=PLAN_COMMANDS,
                                             ge=0, le=1, section="catalogs")
    # Identity requests (braze_migrate/ops/identities.py): `identifies` (/users/identify shares the delete limit)
    # and `external_id_renames` (/users/external_ids/rename and /remove: 1,000/min), guarded like deletes.
    rename_rate_limit: str = option("1000/60s", "requests per period to /users/external_ids/rename and /remove "
                                    "(Braze: 1,000/min)", section="identity")
    identity_max_count: int = option(1000, "hold a run's identifies and renames when they name more users than "
                                     "this", ge=0, section="identity")
    identity_max_share: float = option(0.1, "hold a run's identifies and renames when they name more than this "
                                       "share of the acknowledged users", ge=0, section="identity")
    allow_mass_identity: bool = option(False, "send this run's identifies and renames even over "
                                       "identity_max_count/identity_max_share", section="identity")
    remove_deprecated_ids: bool = option(False, "after a rename, remove the old (deprecated) external_id with "
                                         "/users/external_ids/remove (never /users/delete, which deletes the user)",
                                         section="identity")
    # Verification (`braze-migrate verify`, the `verify` flow and deployment), not the load flows.
    sample: int = option(200, "users to compare (the same users every time)", commands=("verify",), flow=False,
                         ge=1, section="verify")
    event_window_days: int | None = option(
        None, "compare event and purchase counts over the last N days only (Braze's export aggregates 90 days); "
              "unset: all occurrences, as the sandbox keeps them", commands=("verify",), flow=False, ge=1,
              section="verify")
    # The ledger in PostgreSQL (postgresql://...), shared by workers on several machines; unset: SQLite in
    # the state folder. A secret (it may hold a password): environment only, never a flag or flow parameter.
    ledger_url: SecretStr | None = option(None, "PostgreSQL ledger URL (postgresql://...) shared by workers",
                                          commands=(), flow=False, section=None)

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

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (a task's argument sent to a Dask worker): everything but the ledger URL, a secret."""
        state = super().__getstate__()
        return {**state, "__dict__": {**state["__dict__"], "ledger_url": None}}

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickled in another process: the ledger URL of that process's environment."""
        super().__setstate__(state)
        object.__setattr__(self, "ledger_url", _LedgerUrl().ledger_url)


class _LedgerUrl(BaseSettings):
    """BRAZE_MIGRATE_LEDGER_URL alone, as LoadSettings reads and checks it."""

    model_config = SettingsConfigDict(env_prefix="BRAZE_MIGRATE_", extra="ignore")

    ledger_url: SecretStr | None = None

    _check = field_validator("ledger_url")(LoadSettings._check_ledger_url.__func__)


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


def _extra(f) -> dict:
    return f.json_schema_extra or {"commands": [], "flow": False, "section": None}


def section_of(name: str) -> str | None:
    """The section of the flows' parameters an option is a field of (None: a top-level parameter, or a secret)."""
    return _extra(LoadSettings.model_fields[name])["section"]


def section_parameters(values: dict[str, Any]) -> list[str]:
    """Options as `prefect deployment run -p` arguments, one per section: {"allow_mass_delete": True} ->
    `'deletes={"allow_mass_delete": true}'` (shell-quoted; a section given replaces the deployment's)."""
    import json

    sections: dict[str, dict[str, Any]] = {}
    for name, value in values.items():
        sections.setdefault(section_of(name) or name, {})[name] = value
    return [f"'{section}={json.dumps(fields)}'" for section, fields in sections.items()]


def section_options(section: str) -> list[str]:
    """The options of one section, in model order."""
    return [name for name, f in LoadSettings.model_fields.items() if _extra(f)["section"] == section]


def flow_sections() -> list[str]:
    """The sections the load flows take as parameters (those holding a flow option), in `SECTIONS` order."""
    taken = {_extra(f)["section"] for name, f in LoadSettings.model_fields.items() if _extra(f)["flow"]}
    return [name for name in SECTIONS if name in taken]


@functools.cache
def section_model(section: str) -> type[BaseModel]:
    """The typed model of one section, generated from its options: each field with the option's type, default,
    constraints and help, titled with the option's name (the key prefect.yaml takes). Unknown keys are refused,
    so a misspelled option in prefect.yaml fails `prefect deploy` instead of being ignored."""
    fields: dict[str, Any] = {}
    for name in section_options(section):
        info = copy.copy(LoadSettings.model_fields[name])
        info.json_schema_extra, info.title = None, name
        fields[name] = (info.annotation, info)
    title = SECTIONS[section].split(":", 1)[0]
    return create_model(title.replace(" ", ""), __config__=ConfigDict(extra="forbid", frozen=True, title=title),
                        __doc__=_sentence(SECTIONS[section].split(": ", 1)[1]), **fields)


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + "."


def sections_of(settings: LoadSettings, sections: list[str] | None = None) -> dict[str, BaseModel]:
    """`settings` as the flows' section parameters, every field set (so each wins where the flow runs): what the
    CLI hands the flow it runs."""
    return {section: section_model(section)(**{name: getattr(settings, name) for name in section_options(section)})
            for section in (flow_sections() if sections is None else sections)}


def environment_options(sections: dict[str, Any]) -> list[str]:
    """The flow options that a run's parameters (`sections`) leave out and this process's environment sets
    (BRAZE_MIGRATE_<NAME>): what the run takes from the worker, logged by the flow so the rule shows."""
    import os

    given = {name for section, value in sections.items()
             for name in (value.model_fields_set if isinstance(value, BaseModel) else set(value or {}))}
    present = {key.upper() for key in os.environ}
    return [name for name in flow_options() if name != "state" and name not in given
            and f"BRAZE_MIGRATE_{name.upper()}" in present]


def settings_from_parameters(state: str | Path | None, sections: dict[str, Any]) -> LoadSettings:
    """A flow run's settings from its parameters: a field the run's parameters set (`model_fields_set`: given in
    the deployment, the custom-run form, `-p`/`--params` or the call) wins; a field they leave out is taken from
    BRAZE_MIGRATE_<NAME> in this process's environment, else its default (docs/prefect.md, "Parameters")."""
    given: dict[str, Any] = {}
    for section, value in sections.items():
        model = section_model(section)
        try:
            parsed = value if isinstance(value, model) else model.model_validate(value or {})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in (section, *first["loc"]))
            raise ConfigError(f"invalid parameter {where}: {first['msg']}") from None
        given.update({name: getattr(parsed, name) for name in parsed.model_fields_set})
    return load_settings(state=state, **given)
