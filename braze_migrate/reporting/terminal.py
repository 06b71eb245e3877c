"""The run summary as a person reads it at the end of a run, in a terminal (the Prefect report renders the same
RunSummary in flows/artifacts.py)."""

from __future__ import annotations

from braze_migrate.summary import RunSummary


def render_text(summary: RunSummary | dict) -> str:
    """The human summary printed at the end of a run (from the run, or from its `--json` object)."""
    s = RunSummary.coerce(summary)
    w = max([12, *map(len, s.datasets)])  # `order_cancellations`, `catalogs/<name>`
    lines = [
        f"run {s.run_id} ({s.kind} of {s.source}): {s.status.upper()}",
        (f"  requests {s.requests}  batches {s.batches}  retries {s.retries}  "
         f"throttled (429) {s.throttled}  in doubt {len(s.in_doubt)}  duration {s.duration_s:.1f}s"),
        f"  {'dataset':<{w}}{'read':>8}{'acked':>8}{'rejected':>10}{'unchanged':>11}{'pending':>9}{'bad cells':>11}",
    ]
    for name, b in s.datasets.items():
        lines.append(f"  {name:<{w}}{b.read:>8}{b.acknowledged:>8}{b.rejected:>10}{b.unchanged:>11}"
                     f"{b.pending:>9}{b.rejected_cells:>11}")
    lines.append(f"  data points sent {s.data_points.sent} (a full resend would cost {s.data_points.full_resend}); "
                 f"requests {s.requests} (a full resend needs at least {s.requests_full_resend})")
    for b in s.in_doubt:
        lines.append(f"  in doubt: batch {b.batch_no} ({b.events} events, {b.purchases} purchases): {b.action}")
    if s.deletes:  # braze_migrate/ops/deletes.py
        d = s.deletes
        lines.append(f"  user deletes: {len(d['deleted_ids'])} deleted, {len(d['pending_ids'])} pending"
                     + (" (held by the guard)" if d["held"] else "")
                     + (f": {', '.join(d['deleted_ids'][:20])}" + (" ..." if len(d["deleted_ids"]) > 20 else "")
                        if d["deleted_ids"] else ""))
    for c in s.catalogs or []:  # braze_migrate/ops/catalogs.py
        lines.append(catalog_line(c))
    lines.append(f"  rejects file: {s.rejects_file} ({s.rejects} entries)")
    for note in s.notes:
        lines.append(f"  note: {note}")
    if s.resume_command:
        lines.append(f"  to resume: {s.resume_command}")
    return "\n".join(lines)


def catalog_line(c: dict) -> str:
    """One catalog's sync in a line (terminal and Prefect run report)."""
    return (f"  catalog {c['name']}: {c['created']} created, {c['updated']} edited, {c['deleted']} deleted, "
            f"{c['unchanged']} unchanged, {c['gone_kept']} gone and kept, {c['pending']} pending; "
            f"{c['requests']} requests" + (f" (held: {c['held']})" if c["held"] else ""))
