"""Prefect flow `verify`: sample users of an export, read them back from Braze, publish what differs.

Wiring only (braze_migrate.ops.verify does the work). Profiles read back hold personal data: the tasks that
carry them never persist or cache their results, and only ids, field names and counts are logged.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed, Failed

from braze_migrate.ops import verify as logic
from braze_migrate.run.credentials import resolve_credentials
from braze_migrate.settings import ConfigError, settings_from_parameters
from flows import artifacts
from flows.decisions import in_deployment
from flows.options import with_sections


@task(name="expect", cache_policy=NO_CACHE, persist_result=False)
def expect_task(source: str, mapping: str | None, state: str, sample: int,
                event_window_days: int | None) -> logic.Expectations:
    """Normalize the export as a load would, sample users, and say what Braze should hold for each."""
    since = logic.since_days(event_window_days)
    expectations = logic.build_expectations(source, state, sample, since=since, mapping=mapping)
    get_run_logger().info("sampled %d users; %d objects set aside as rejected by Braze or in doubt",
                          len(expectations.users), expectations.excluded)
    return expectations


@task(name="read-back", cache_policy=NO_CACHE, persist_result=False)
def read_back_task(expectations: logic.Expectations) -> logic.ReadBack:
    """Export the sampled users from Braze (/users/export/ids, within its own rate limit)."""
    endpoint, api_key = resolve_credentials()
    ids = expectations.ids()  # the sampled users and the sampled deleted ones
    read = logic.read_profiles(endpoint, api_key, ids, expectations.fields)
    get_run_logger().info("read %d profiles back in %d requests (%d throttled)", len(read.profiles),
                          read.requests, read.throttled)
    return read


@task(name="compare", cache_policy=NO_CACHE, persist_result=False)
def compare_task(source: str, expectations: logic.Expectations, read: logic.ReadBack) -> logic.VerifyReport:
    """Compare attributes, push tokens and occurrence counts user by user."""
    return logic.compare(source, expectations, read)


@flow(name="verify", flow_run_name="verify-{source}", log_prints=False)
@with_sections(["verify"], source="the export that was loaded: folder, object-store URI or mapping file",
               state="state folder of the loads: an absolute path on the worker",
               mapping="the mapping file the load used")
def verify(source: str, state: str, mapping: str | None = None, **sections):
    """QA after a load: does Braze hold what the export says? Ends Failed when any sampled user differs."""
    try:
        settings = settings_from_parameters(state, sections)
    except ConfigError as exc:
        get_run_logger().error("%s", exc)
        return Failed(message=str(exc))
    state, sample, event_window_days = str(settings.state), settings.sample, settings.event_window_days
    if in_deployment() and not Path(state).is_absolute():  # never a state folder inside the worker's checkout
        message = (f"this deployment's state folder is {state!r}, not an absolute path: set its `state` parameter "
                   "(`-p state=/srv/braze-migrate/state`)")
        get_run_logger().error("%s", message)
        return Failed(message=message)
    expectations = expect_task(source, mapping, state, sample, event_window_days)
    read = read_back_task(expectations)
    report = compare_task(source, expectations, read)
    artifacts.publish_verify(report)
    message = f"{report.mismatched} of {report.sampled} sampled users differ from the export"
    get_run_logger().info("verify %s: %d sampled, %d matched, %d mismatched", source, report.sampled,
                          report.matched, report.mismatched)
    if report.mismatched:
        message += ": see the verify-mismatches table"
        return Failed(message=message, data=logic.MismatchesFound(message, report.to_dict()))
    return Completed(message=message, data=report.to_dict())
