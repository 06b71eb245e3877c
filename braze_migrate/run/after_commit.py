"""What a stage that runs after a load run's commit (user deletes, catalog sync) needs: the run's record,
its mapping, Braze's credentials and the command that runs it again; the engine is closed on exit."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from braze_migrate.run.credentials import resolve_credentials
from braze_migrate.run.engine import Engine
from braze_migrate.settings import LoadSettings
from connectors.state.ledger_base import Run
from connectors.states import RunState


@dataclass(frozen=True)
class AfterCommit:
    engine: Engine
    settings: LoadSettings
    run: Run
    mapping: str | None
    endpoint: str
    api_key: str

    @property
    def command(self) -> str:
        """The command that runs this load again (it resumes or finishes what is left)."""
        return (f"braze-migrate {self.run.kind} {self.run.source}"
                + (f" --mapping {self.mapping}" if self.mapping else "") + f" --state {self.engine.state}")

    def record(self, summary) -> None:
        """Store the summary the stage completed with its run (the run stays committed)."""
        self.engine.ledger.set_run_status(self.run.run_id, RunState.COMMITTED, summary.to_json())


@contextmanager
def after_commit(prepared, settings: LoadSettings) -> Iterator[AfterCommit]:
    engine = Engine(settings)
    try:
        run = engine.ledger.run(prepared.run_id)
        endpoint, api_key = resolve_credentials(settings)
        yield AfterCommit(engine, settings, run, (run.settings or {}).get("mapping"), endpoint, api_key)
    finally:
        engine.close()
