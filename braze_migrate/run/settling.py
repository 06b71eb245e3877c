"""`settle` for the flows: the in-doubt batches of a run checked against Braze (`settle --check`) or settled as a
person decided, holding the state folder like the CLI's `settle` does (the run lock, the ledger).

The flows follow the one decision table (braze_migrate/run/advice.py): in doubt, `settle --check` first, then
the plain resume; `--delivered`/`--resend` only for the batches the check could not decide."""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial

from braze_migrate.ops.settle import SettleError, SettleReport, check_in_doubt, settle
from braze_migrate.run.engine import _exporter, open_run_ledger
from braze_migrate.settings import ConfigError, LoadSettings
from connectors.state.ledger_base import LedgerUnavailable
from connectors.state.lock import StateInUse, run_lock


def check(run_id: str, settings: LoadSettings) -> SettleReport:
    """`braze-migrate settle RUN --check`: the batches the aggregates Braze gives back decide are settled;
    `report.undecided` names the others, `report.counts` their events and purchases."""
    return _holding(settings, "settle --check", lambda state, ledger, settings: check_in_doubt(
        state, ledger, run_id, partial(_exporter, settings)()))


def decide(run_id: str, settings: LoadSettings, decision: str, batches: Iterable[int], decided_by: str
           ) -> SettleReport:
    """`braze-migrate settle RUN --delivered|--resend BATCH...` as a person answered."""
    return _holding(settings, f"settle --{decision}", lambda state, ledger, settings: settle(
        state, ledger, run_id, decision, list(batches), decided_by=decided_by))


def _holding(settings: LoadSettings, command: str, work) -> SettleReport:
    url = settings.ledger_url.get_secret_value() if settings.ledger_url else None
    try:
        with run_lock(settings.state, command, ledger_url=url):
            ledger = open_run_ledger(settings)
            try:
                return work(settings.state, ledger, settings)
            finally:
                ledger.close()
    except (StateInUse, LedgerUnavailable, SettleError) as exc:
        raise ConfigError(str(exc)) from None
