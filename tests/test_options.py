"""One source of options: every option of `LoadSettings` is a CLI flag of the load commands with the same
default, a parameter of every load flow resolving to the same default, and a parameter of the load deployments
in prefect.yaml with that default (or deliberately absent, listed below)."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import yaml

from braze_migrate.cli.main import build_parser
from braze_migrate.settings import LoadSettings, flag_options, flow_options
from flows.load import backfill, sync
from flows.parallel import backfill_parallel, sync_parallel

ROOT = Path(__file__).resolve().parent.parent
LOAD_FLOWS = {"backfill": backfill, "sync": sync, "backfill-parallel": backfill_parallel,
              "sync-parallel": sync_parallel}
# Secrets: environment only (never a flag, a flow parameter or a line of prefect.yaml).
SECRET = {"ledger_url"}
# Tuning knobs the shipped deployments leave at the flow's default (the same as the model's).
NOT_IN_PREFECT_YAML = {"max_attempts", "max_retry_seconds", "timeout_seconds", "retry_backoff_seconds",
                       "users_per_partition", "accept", "guard_unset_share", "guard_changed_share",
                       "guard_min_users", "guard_rows_drop_share", "guard_min_rows", "decision_timeout",
                       "strict", "plan_retention_days", "delete_rate_limit", "delete_max_count",
                       "delete_max_share", "allow_mass_delete", "accept_type_change",
                       "suspicious", "time_horizon_year", "auto_settle",
                       "ready_marker", "ready_deadline", "ready_poll_seconds", "skip_unchanged", "rename_rate_limit",
                       "identity_max_count", "identity_max_share", "allow_mass_identity", "remove_deprecated_ids"}
# Per deployment: options it deliberately leaves to whoever activates it (issue 12: nightly-sync must not
# run until its source and state are configured, and state never defaults into the checkout).
LEFT_TO_CONFIGURE = {"nightly-sync": {"state"}, "backfill": {"state"}}
# Values that are a deployment's own, not a default.
DEPLOYMENT_VALUES = {"source"}


def model_default(name: str):
    default = LoadSettings.model_fields[name].default
    return str(default) if isinstance(default, Path) else default


@pytest.fixture(autouse=True)
def _no_option_env(monkeypatch):
    for name in LoadSettings.model_fields:
        monkeypatch.delenv(f"BRAZE_MIGRATE_{name.upper()}", raising=False)


def test_every_option_is_a_flag_or_a_secret():
    """Every load-flow option is a flag of backfill and sync; the others are verify's, or secrets."""
    assert set(flag_options("backfill")) | set(flag_options("verify")) | SECRET == set(LoadSettings.model_fields)
    assert flag_options("backfill") == flag_options("sync") == flow_options()
    assert not SECRET & (set(flow_options()) | set(flag_options("verify")))


@pytest.mark.parametrize("command", ["backfill", "sync"])
def test_flags_default_to_the_model(command):
    args = build_parser().parse_args([command, "src"])
    from braze_migrate.cli.options import settings_from_args

    assert settings_from_args(args, command) == LoadSettings()
    for name in flag_options(command):
        assert getattr(args, name) is None  # unset: the environment, then the model's default, decide


def test_a_flag_overrides_the_environment(monkeypatch):
    from braze_migrate.cli.options import settings_from_args

    monkeypatch.setenv("BRAZE_MIGRATE_BATCH_SIZE", "40")
    args = build_parser().parse_args(["backfill", "src"])
    assert settings_from_args(args, "backfill").batch_size == 40
    args = build_parser().parse_args(["backfill", "src", "--batch-size", "30", "--in-doubt", "resend"])
    settings = settings_from_args(args, "backfill")
    assert (settings.batch_size, settings.in_doubt) == (30, "resend")


@pytest.mark.parametrize("name", sorted(LOAD_FLOWS))
def test_every_load_flow_takes_the_sections_typed_with_their_defaults_and_state_required(name):
    """What the Parameters tab and the custom-run form show: source and state required (state a string), then
    one section per group of options, each field with its type, default and help (issue 26, item 8)."""
    from braze_migrate.settings import flow_sections, section_model, section_options

    params = inspect.signature(LOAD_FLOWS[name].fn).parameters
    assert params["state"].default is inspect.Parameter.empty and params["state"].annotation is str
    for section in flow_sections():
        assert params[section].annotation is section_model(section)
        assert params[section].default.model_fields_set == set()  # unset: the environment, then the default
    schema = LOAD_FLOWS[name].parameters.model_dump()
    assert schema["required"] == ["source", "state"]
    assert schema["properties"]["state"]["type"] == "string" and "absolute" in schema["properties"]["state"]["description"]
    assert set(flow_options()) - {"state"} == {o for s in flow_sections() for o in section_options(s)}
    assert not set(flow_options()) - {"state"} & set(schema["properties"])  # no loose option any more
    for section in flow_sections():
        prop = schema["properties"][section]
        definition = schema["definitions"][prop["$ref"].rsplit("/", 1)[1]]
        assert definition["description"] and definition["additionalProperties"] is False
        for option in section_options(section):
            field = definition["properties"][option]
            assert field["default"] == prop["default"][option] == model_default(option), option
            assert field["description"] == LoadSettings.model_fields[option].description
            assert "type" in field or "enum" in field or "anyOf" in field, option


def test_the_schema_says_each_type():
    schema = sync.parameters.model_dump()
    props = {name: d["properties"] for name, d in schema["definitions"].items()}
    assert props["Requests"]["batch_size"]["type"] == "integer" and props["Requests"]["batch_size"]["minimum"] == 1
    assert props["Requests"]["rate_limit"]["type"] == "string"
    assert props["Retries"]["in_doubt"]["enum"] == ["resend", "skip"]
    assert props["Guards"]["accept"] == {"default": [], "description": LoadSettings.model_fields["accept"].description,
                                         "items": {"type": "string"}, "title": "accept", "type": "array"}
    assert props["Readiness"]["ready_poll_seconds"]["type"] == "number"
    assert props["Catalogs"]["catalog_deletes"]["type"] == "boolean"
    assert [schema["properties"][s]["position"] for s in ("source", "state", "mapping", "date", "requests")] == [
        0, 1, 2, 3, 4]


def _prefect_yaml() -> dict:
    return yaml.safe_load((ROOT / "prefect.yaml").read_text())


def test_prefect_yaml_load_deployments_carry_every_option_with_its_default():
    from braze_migrate.settings import flow_sections, section_options

    loads = [d for d in _prefect_yaml()["deployments"] if d["entrypoint"].startswith("flows/load.py:")]
    assert {d["entrypoint"] for d in loads} == {"flows/load.py:backfill", "flows/load.py:sync"}
    for d in loads:
        params = d.get("parameters") or {}
        flow = LOAD_FLOWS[d["entrypoint"].rsplit(":", 1)[1]]
        assert set(params) <= set(inspect.signature(flow.fn).parameters), d["name"]
        options = {}
        for section, values in params.items():
            if section in flow_sections():
                assert set(values) <= set(section_options(section)), (d["name"], section)
                options.update(values)
            else:
                options[section] = values
        assert not SECRET & set(options)
        missing = set(flow_options()) - set(options) - NOT_IN_PREFECT_YAML - LEFT_TO_CONFIGURE.get(d["name"], set())
        assert not missing, f"{d['name']} lacks {missing}: add them to prefect.yaml or to NOT_IN_PREFECT_YAML"
        for option, value in options.items():
            if option not in DEPLOYMENT_VALUES:
                assert value == model_default(option), (d["name"], option, value)


@pytest.mark.parametrize("entrypoint", ["flows/load.py:sync", "flows/load.py:backfill", "flows/verify.py:verify"])
def test_prefect_yaml_parameters_pass_the_check_prefect_deploy_makes(entrypoint):
    """The server checks a deployment's parameters against its flow's schema when `prefect deploy` or serve
    creates it (required ones aside, as there); a misspelled option or a wrong type is refused."""
    from prefect.utilities.schema_tools.validation import ValidationError, validate

    from flows.verify import verify

    flow = {**LOAD_FLOWS, "verify": verify}[entrypoint.rsplit(":", 1)[1]]
    schema = flow.parameters.model_dump()
    for d in (d for d in _prefect_yaml()["deployments"] if d["entrypoint"] == entrypoint):
        validate(d.get("parameters") or {}, schema, raise_on_error=True, ignore_required=True)
    section = "verify" if flow is verify else "requests"
    for bad in ({section: {"batch_sise": 10}}, {section: {"sample" if flow is verify else "batch_size": "many"}}):
        with pytest.raises(ValidationError):
            validate(bad, schema, raise_on_error=True, ignore_required=True)
    with pytest.raises(ValidationError, match="'state' is a required property"):
        validate({"source": "/srv/exports"}, schema, raise_on_error=True)


def test_boolean_options_are_switches_both_ways():
    from braze_migrate.cli.options import settings_from_args

    flags = [n for n in flag_options("backfill") if LoadSettings.model_fields[n].annotation is bool]
    for name in flags:
        for given, value in ((f"--{name.replace('_', '-')}", True), (f"--no-{name.replace('_', '-')}", False)):
            args = build_parser().parse_args(["backfill", "src", given])
            assert getattr(settings_from_args(args, "backfill"), name) is value, given


def test_verify_options_come_from_the_model_too():
    """`verify`'s flags, its flow's `verify` section and its deployment's values are the model's verify options."""
    from braze_migrate.settings import section_model, section_options
    from flows.verify import verify

    options = flag_options("verify")
    assert {"state", "sample", "event_window_days"} <= set(options)
    params = inspect.signature(verify.fn).parameters
    assert params["state"].default is inspect.Parameter.empty
    assert params["verify"].annotation is section_model("verify") and params["verify"].default.model_fields_set == set()
    assert verify.parameters.model_dump()["required"] == ["source", "state"]
    (deployment,) = [d for d in _prefect_yaml()["deployments"] if d["entrypoint"] == "flows/verify.py:verify"]
    assert set(deployment["parameters"]) == {"verify"}
    for option, value in deployment["parameters"]["verify"].items():
        assert option in section_options("verify") and value == model_default(option), option


def test_every_flow_option_but_state_is_in_one_section():
    """Each option is tagged with its section in settings.py: the flows take one typed parameter per section."""
    from braze_migrate.settings import SECTIONS, flow_sections, section_options

    in_sections = [name for section in flow_sections() for name in section_options(section)]
    assert sorted(in_sections) == sorted(set(flow_options()) - {"state"})
    assert section_options("verify") == ["sample", "event_window_days"]
    assert set(flow_sections()) | {"verify"} == set(SECTIONS)


@pytest.mark.parametrize("section", ["requests", "guards", "readiness", "identity", "verify"])
def test_a_section_model_has_the_options_types_defaults_and_help(section):
    from braze_migrate.settings import section_model, section_options

    model = section_model(section)
    assert list(model.model_fields) == section_options(section)
    schema = model.model_json_schema()
    assert schema["additionalProperties"] is False  # a misspelled option fails `prefect deploy`
    for name, field in model.model_fields.items():
        option = LoadSettings.model_fields[name]
        assert (field.annotation, field.default, field.description) == (option.annotation, option.default,
                                                                         option.description)
        assert schema["properties"][name]["title"] == name  # the key prefect.yaml takes
    assert model().model_fields_set == set()


def test_the_sections_schema_says_real_types():
    from braze_migrate.settings import section_model

    props = section_model("requests").model_json_schema()["properties"]
    assert props["batch_size"] == {"default": 75, "description": "objects per request", "maximum": 1000,
                                   "minimum": 1, "title": "batch_size", "type": "integer"}
    assert props["batch_mode"]["enum"] == ["combined", "per_array"]
    guards = section_model("guards").model_json_schema()["properties"]
    assert guards["accept"]["type"] == "array" and guards["accept"]["default"] == []
    assert guards["guard_unset_share"]["type"] == "number"
    assert section_model("catalogs").model_json_schema()["properties"]["catalog_deletes"]["type"] == "boolean"


def test_parameters_set_win_else_the_environment_else_the_default(monkeypatch):
    """The rule of docs/prefect.md: a field the run's parameters set wins; a field left out is the environment's
    (BRAZE_MIGRATE_<NAME> where the flow runs), else the model's default."""
    from braze_migrate.settings import section_model, settings_from_parameters

    monkeypatch.setenv("BRAZE_MIGRATE_BATCH_SIZE", "40")
    monkeypatch.setenv("BRAZE_MIGRATE_MAX_ATTEMPTS", "2")
    settings = settings_from_parameters("/srv/state", {"requests": {"rate_limit": "100/1s"}, "retries": {}})
    assert (settings.rate_limit, settings.batch_size, settings.max_attempts) == ("100/1s", 40, 2)
    assert settings.concurrency == 100 and settings.state == Path("/srv/state")
    # Set to the default is set: it wins over the environment (the custom-run form sends every field).
    sending = section_model("requests")(batch_size=75)
    assert settings_from_parameters("/s", {"requests": sending}).batch_size == 75
    assert settings_from_parameters("/s", {"requests": section_model("requests")()}).batch_size == 40


def test_a_bad_parameter_is_one_line(monkeypatch):
    from braze_migrate.settings import ConfigError, settings_from_parameters

    with pytest.raises(ConfigError, match="invalid setting --rate-limit"):
        settings_from_parameters("/s", {"requests": {"rate_limit": "fast"}})
    with pytest.raises(ConfigError, match=r"invalid parameter requests\.batch_size: Input should be greater"):
        settings_from_parameters("/s", {"requests": {"batch_size": 0}})
    with pytest.raises(ConfigError, match=r"invalid parameter guards\.guard_min_user: Extra inputs"):
        settings_from_parameters("/s", {"guards": {"guard_min_user": 5}})


def test_settings_sent_to_another_process_leave_the_ledger_url_behind(monkeypatch):
    """A task's LoadSettings pickled for a Dask worker carries no secret: the worker takes its own ledger URL."""
    import pickle

    from braze_migrate.settings import load_settings

    monkeypatch.setenv("BRAZE_MIGRATE_LEDGER_URL", "postgresql://loader:s3cret-pw@db.internal/ledger")
    settings = load_settings(state="/srv/state", batch_size=10)
    sent = pickle.dumps(settings)
    assert b"s3cret-pw" not in sent and b"db.internal" not in sent
    monkeypatch.setenv("BRAZE_MIGRATE_LEDGER_URL", "postgresql://worker@other/ledger")
    received = pickle.loads(sent)
    assert received.ledger_url.get_secret_value() == "postgresql://worker@other/ledger"
    assert (received.batch_size, received.state) == (10, Path("/srv/state"))
    monkeypatch.delenv("BRAZE_MIGRATE_LEDGER_URL")
    assert pickle.loads(sent).ledger_url is None
    assert settings.ledger_url.get_secret_value().endswith("/ledger")  # the sender's own copy is untouched


def test_docs_prefect_md_lists_each_section_with_its_options():
    """docs/prefect.md's table of sections is the model's: a section or option added shows up there or fails."""
    import re

    from braze_migrate.settings import SECTIONS, section_options

    text = (ROOT / "docs" / "prefect.md").read_text()
    rows = dict(re.findall(r"^\| `(\w+)`[^|]* \| (`.*`) \|$", text, flags=re.MULTILINE))
    for section in SECTIONS:
        assert re.findall(r"`(\w+)`", rows[section]) == section_options(section), section


def test_the_options_taken_from_the_environment_are_named(monkeypatch):
    """The flow logs which options it took from the worker's environment (the parameters left them out)."""
    from braze_migrate.settings import environment_options, section_model

    monkeypatch.setenv("BRAZE_MIGRATE_BATCH_SIZE", "40")
    monkeypatch.setenv("BRAZE_MIGRATE_READY_MARKER", "_SUCCESS")
    monkeypatch.setenv("BRAZE_MIGRATE_STATE", "/elsewhere")  # a parameter of its own, required: never from here
    assert environment_options({"requests": {"rate_limit": "1/1s"}}) == ["batch_size", "ready_marker"]
    assert environment_options({"requests": section_model("requests")(batch_size=75),
                                "readiness": {"ready_marker": ""}}) == []
