"""The deletes of a finished load run, as a stage after its commit: run the user_deletes requests
(braze_migrate/ops/deletes.py) and add their outcome to the run's summary."""

from __future__ import annotations

from pathlib import Path

from braze_migrate.ops.deletes import DATASET, DeleteReport, DeleteSettings, append_rejects, run_deletes
from braze_migrate.run.after_commit import after_commit
from braze_migrate.summary import Buckets, RunStatus


def deletes_stage(prepared, settings, summary):
    """The deletes of a finished load run (after its commit), added to its summary: `summary.deletes`, and
    a held or unfinished delete makes the run HELD or INCOMPLETE with the command that goes on."""
    if summary.status not in (RunStatus.COMPLETED, RunStatus.INCOMPLETE):
        return summary  # a stopped load resumes first; its deletes come after it
    with after_commit(prepared, settings) as done:
        report = run_deletes(prepared.run_id, prepared.plan_dir, done.engine.state, done.run.source, done.mapping,
                             done.engine.ledger, done.endpoint, done.api_key, DeleteSettings.of(done.settings))
        if report is None:
            return summary
        command = done.command
        update: dict = {"deletes": report.to_dict()}
        if report.held:
            update.update(status=RunStatus.HELD, message=report.message,
                          resume_command=f"{command} --allow-mass-delete")
        elif report.pending_batches:
            update.update(status=RunStatus.INCOMPLETE, resume_command=command,
                          notes=[*summary.notes, (f"deletes: {len(report.pending_ids)} users not yet deleted "
                                                  "(no answer from Braze); the next run sends them again")])
        if report.rejected_rows:
            update["notes"] = [*update.get("notes", summary.notes),
                               f"deletes: {len(report.rejected_rows)} rows of user_deletes without a usable external_id"]
            update["rejects"] = summary.rejects + append_rejects(Path(summary.rejects_file), report.rejected_rows)
        update["datasets"] = {**summary.datasets, DATASET: _buckets(summary.datasets.get(DATASET), report)}
        summary = summary.model_copy(update=update)
        done.record(summary)
        return summary


def _buckets(before, report: DeleteReport):
    """The user_deletes row accounting: deleted (acknowledged), rejected, pending; the rest (repeated ids,
    ids deleted by an earlier run) unchanged."""
    read = before.read if before is not None else report.requested + len(report.rejected_rows)
    pending = report.requested if report.held else len(report.pending_ids)
    acked = 0 if report.held else len(report.deleted_ids)
    rejected = len(report.rejected_rows)
    return Buckets(read=read, acknowledged=acked, rejected=rejected, pending=pending,
                   unchanged=max(0, read - acked - rejected - pending))
