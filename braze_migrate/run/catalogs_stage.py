"""The catalog sync of a finished load run, as a stage after its commit and deletes: sync the export's
catalogs (braze_migrate/ops/catalogs.py) and add their outcome to the run's summary."""

from __future__ import annotations

from pathlib import Path

from braze_migrate.ops.catalogs import CatalogSettings, sync_catalogs
from braze_migrate.ops.deletes import append_rejects
from braze_migrate.run.after_commit import after_commit
from braze_migrate.summary import Buckets, RunStatus
from connectors.braze.catalogs import CatalogClient
from connectors.sources import CATALOGS


def catalogs_stage(prepared, settings, summary):
    """The catalog sync of a finished load run (after its commit and deletes), added to its summary:
    `summary.catalogs`, a `catalogs/<name>` row in the datasets; a held delete makes the run HELD, requests
    without an answer INCOMPLETE, each with the command that goes on."""
    if summary.status not in (RunStatus.COMPLETED, RunStatus.INCOMPLETE):
        return summary  # a stopped load resumes first; the catalogs come after it
    with after_commit(prepared, settings) as done:
        cs = CatalogSettings.of(done.settings)
        client = CatalogClient(done.endpoint, done.api_key, rate=cs.rate_limit, max_attempts=cs.max_attempts,
                               max_seconds=cs.max_retry_seconds, timeout=cs.timeout_seconds)
        state = done.engine.state
        reports = sync_catalogs(prepared.run_id, state / "runs", state, done.run.source, done.mapping,
                                done.engine.ledger, client, cs)
        if not reports:
            return summary
        command = done.command
        datasets = dict(summary.datasets)
        for r in reports:
            acked = r.created + r.updated
            datasets[f"{CATALOGS}{r.name}"] = Buckets(read=r.read, acknowledged=acked, rejected=r.rejected,
                                                      unchanged=r.unchanged,
                                                      pending=max(0, r.read - acked - r.rejected - r.unchanged))
        update: dict = {"catalogs": [r.to_dict() for r in reports], "datasets": datasets,
                        "requests": summary.requests + sum(r.requests for r in reports)}
        rows = [row for r in reports for row in r.rejected_rows]
        if rows:
            update["rejects"] = summary.rejects + append_rejects(Path(summary.rejects_file), rows)
        held = [r.held for r in reports if r.held]
        if held:
            update.update(status=RunStatus.HELD, message="; ".join(held),
                          resume_command=f"{command} --catalog-deletes --allow-mass-delete")
        elif any(r.pending for r in reports):
            update.update(status=RunStatus.INCOMPLETE, resume_command=command,
                          notes=[*summary.notes, ("catalogs: requests without an answer from Braze; the next "
                                                  "run sends them again")])
        refused = [f"{r.name}: {r.refused_batches}" for r in reports if r.refused_batches]
        if refused:
            update["notes"] = [*update.get("notes", summary.notes),
                               (f"catalogs: requests Braze refused whole (400; its error ids are in the ledger, "
                               f"catalog_batches.reason): {', '.join(refused)}")]
        summary = summary.model_copy(update=update)
        done.record(summary)
        return summary
