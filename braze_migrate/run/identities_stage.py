"""The identity requests of a finished load run, as a stage after its commit and deletes: send the export's
`identifies` and `external_id_renames` (braze_migrate/ops/identities.py) and add their outcome to the summary.

After the commit, so the users they move are acknowledged under their old identity first; the next night's
export names them under the new one and diffs against the moved state."""

from __future__ import annotations

from pathlib import Path

from braze_migrate.ops.deletes import append_rejects
from braze_migrate.ops.identities import DATASETS, IdentityReport, IdentitySettings, run_identities
from braze_migrate.run.credentials import resolve_credentials
from braze_migrate.run.engine import Engine
from braze_migrate.settings import LoadSettings
from braze_migrate.summary import Buckets, RunStatus
from connectors.states import RunState


def identities_stage(prepared, settings: LoadSettings, summary):
    """Identify and rename (then remove deprecated ids), recorded in `summary.identities`; a held or
    unfinished request makes the run HELD or INCOMPLETE with the command that goes on."""
    if summary.status not in (RunStatus.COMPLETED, RunStatus.INCOMPLETE):
        return summary  # a stopped or held load resumes first; its identity requests come after it
    engine = Engine(settings)
    try:
        run = engine.ledger.run(prepared.run_id)
        mapping = (run.settings or {}).get("mapping")
        endpoint, api_key = resolve_credentials(settings)
        report = run_identities(prepared.run_id, prepared.plan_dir, engine.state, run.source, mapping,
                                engine.ledger, endpoint, api_key, IdentitySettings.of(settings))
        if report is None:
            return summary
        command = (f"braze-migrate {run.kind} {run.source}" + (f" --mapping {mapping}" if mapping else "")
                   + f" --state {engine.state}")
        update: dict = {"identities": report.to_dict()}
        notes = list(summary.notes)
        if report.held:
            update.update(status=RunStatus.HELD, message=report.message,
                          resume_command=f"{command} --allow-mass-identity")
        elif report.pending_batches:
            update.update(status=RunStatus.INCOMPLETE, resume_command=command)
            notes.append(f"identity requests: {sum(report.pending.values())} not yet answered by Braze; the same "
                         "command sends them (what Braze already did is read back, not requested again)")
        if report.refused.get("rename"):
            notes.append(f"renames: Braze refused {report.refused['rename']} (their current id is not a primary id "
                         "or the new one is in use); the state keeps the old ids")
        if report.rejected_rows:
            notes.append(f"identity requests: {len(report.rejected_rows)} rows rejected (see the rejects file)")
            update["rejects"] = summary.rejects + append_rejects(Path(summary.rejects_file), report.rejected_rows)
        update["notes"] = notes
        datasets = dict(summary.datasets)
        for name, kind in DATASETS.items():
            if name in datasets or report.requested.get(kind):
                datasets[name] = _buckets(datasets.get(name), report, kind)
        update["datasets"] = datasets
        summary = summary.model_copy(update=update)
        engine.ledger.set_run_status(prepared.run_id, RunState.COMMITTED, summary.to_json())
        return summary
    finally:
        engine.close()


def _buckets(before, report: IdentityReport, kind: str) -> Buckets:
    """Rows of `identifies` / `external_id_renames`: acknowledged (carried out), rejected (bad rows and refused
    renames), pending; the rest (requests an earlier run carried out, repeated rows) unchanged."""
    rejected_rows = sum(1 for r in report.rejected_rows
                        if r["dataset"] == next(n for n, k in DATASETS.items() if k == kind))
    read = before.read if before is not None else report.requested.get(kind, 0) + rejected_rows
    pending = report.requested.get(kind, 0) if report.held else report.pending.get(kind, 0)
    acked = 0 if report.held else report.done.get(kind, 0)
    rejected = rejected_rows + report.refused.get(kind, 0)
    return Buckets(read=read, acknowledged=acked, rejected=rejected, pending=pending,
                   unchanged=max(0, read - acked - rejected - pending))
