"""What the Prefect UI shows of a run: how far along it is, what went wrong, what to do now.

Counts, batch numbers, paths and external_ids only: never an email, phone, token, payload or key. Keys are
per flow (`backfill-*`, `sync-*`, `verify-*`) so each deployment's artifacts form one history in the UI.
"""

from __future__ import annotations

import time

from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.runtime import deployment, flow_run

from braze_migrate.summary import RunSummary

UPDATE_EVERY_S = 2.0  # one API call per couple of seconds, not one per batch
MAX_TABLE_ROWS = 500  # a table artifact is one JSON document: the CLI's --json output has every row
BUCKET_COLUMNS = ("read", "acknowledged", "rejected", "unchanged", "pending", "rejected_cells")


class Progress:
    """A progress artifact (batches done of those planned), updated in place and sparingly."""

    def __init__(self, run_id: str, kind: str | None = None, *, clock=time.monotonic):
        kind = kind or flow_run.get_flow_name() or "load"
        # `_sync=True`: `update` is called from the loader's event loop, where Prefect's dispatching
        # helpers would otherwise return an un-awaited coroutine and the update would never be sent.
        self.artifact_id = create_progress_artifact(
            progress=0.0, key=f"{kind}-progress", _sync=True,
            description=f"Load of run {run_id}: batches acknowledged by Braze of those planned",
        )
        self._clock = clock
        self._last = clock()
        self._sent = 0.0
        self._pct = 0.0

    def update(self, done: int, total: int) -> None:
        self._pct = 100.0 if total == 0 else round(100.0 * done / total, 2)
        now = self._clock()
        if now - self._last >= UPDATE_EVERY_S or done == total:
            self._push(now)

    def finish(self) -> None:
        if self._pct != self._sent:
            self._push(self._clock())

    def _push(self, now: float) -> None:
        self._last = now
        self._sent = self._pct
        update_progress_artifact(self.artifact_id, self._pct, _sync=True)


def bucket_rows(summary: RunSummary) -> list[dict]:
    """One row per dataset plus a total row: read = acknowledged + rejected + unchanged + pending."""
    rows = [{"dataset": name, **{c: int(getattr(b, c)) for c in BUCKET_COLUMNS}}
            for name, b in summary.datasets.items()]
    if rows:
        rows.append({"dataset": "total", **{c: sum(r[c] for r in rows) for c in BUCKET_COLUMNS}})
    return rows


def publish_summary(summary: RunSummary) -> None:
    """The buckets table and the markdown run report of a finished (or stopped) run."""
    kind = summary.kind
    create_table_artifact(table=bucket_rows(summary), key=f"{kind}-buckets",
                          description=f"Rows per bucket, run {summary.run_id} ({summary.status})")
    name = f"{flow_run.get_flow_name()}/{deployment.name}" if deployment.get_id() else None
    create_markdown_artifact(markdown=report_markdown(summary, name), key=f"{kind}-report",
                             description=headline(summary))


def headline(summary: RunSummary) -> str:
    """One line for artifact lists: outcome, where the rows went, and whether something is left to do."""
    line = (f"{summary.status}: {summary.total('acknowledged')} of {summary.total('read')} rows acknowledged, "
            f"{summary.total('unchanged')} unchanged, {summary.total('rejected')} rejected, "
            f"{summary.total('pending')} pending")
    return line + (" - resume needed" if summary.resume_command else "")


def report_markdown(summary: RunSummary, deployment_name: str | None = None) -> str:
    """The run report: headline, what it cost, what went wrong, what to do (from the CLI, and from
    Prefect when the run came from the deployment `deployment_name`)."""
    s = summary
    dp = s.data_points
    duration = s.duration_s or 0.0
    throughput = s.requests / duration if duration else 0.0
    pending = s.total("pending")
    rejected = s.total("rejected") + s.total("rejected_cells")
    lines = [
        f"# {s.kind} {s.run_id}: {s.status}",
        "",
        f"Source `{s.source}`, state `{s.state}`" + (" (resumed run)" if s.resumed else ""),
        "",
        "| | |",
        "|---|---|",
        (f"| requests | {s.requests} ({s.acknowledged_batches} of {s.batches} "
         f"batches acknowledged; a full resend would need {s.requests_full_resend}) |"),
        f"| rate limited (429) | {s.throttled} |",
        f"| retries | {s.retries} |",
        f"| in-doubt batches | {len(s.in_doubt)} |",
        (f"| data points sent | {dp.sent} (a full resend would cost {dp.full_resend}: "
         f"{dp.full_resend - dp.sent} saved) |"),
        f"| duration | {duration:.1f} s |",
        f"| throughput | {throughput:.1f} requests/s |",
        f"| rejects file | `{s.rejects_file}` ({s.rejects} entries) |",
        "",
        "## Rows per bucket",
        "",
        "| dataset | read | acknowledged | rejected | unchanged | pending | rejected cells |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [f"| {r['dataset']} | {r['read']} | {r['acknowledged']} | {r['rejected']} | {r['unchanged']} | "
              f"{r['pending']} | {r['rejected_cells']} |" for r in bucket_rows(s)]
    if s.in_doubt:
        lines += ["", "## In doubt (sent, then no definite answer: may have landed)", ""]
        lines += [f"- batch {b.batch_no}: {b.events} events, {b.purchases} purchases: {b.action}"
                  for b in s.in_doubt]
    lines += ["", "## What to do", ""]
    for note in s.notes:
        lines.append(f"- Note: {note}")
    if s.resume_command:
        lines.append(f"- **{pending} rows are pending.** Resume (acknowledged batches are skipped): "
                     f"`{s.resume_command}`")
        if deployment_name:
            resend = " -p in_doubt=resend" if "--in-doubt resend" in s.resume_command else ""
            lines.append(f"- Or from Prefect, run the deployment again on the same source and state: "
                         f"`prefect deployment run '{deployment_name}' -p source={s.source} "
                         f"-p state={s.state}{resend}`" + ("" if resend else " (or press Retry)"))
    if rejected:
        lines.append(f"- **Warning:** {rejected} rows or cells were rejected, each with its reason: open "
                     f"`{s.rejects_file}`, fix them in the warehouse; the next run sends the fixes.")
    if not s.resume_command and not rejected:
        lines.append("- Nothing: every row was acknowledged by Braze or unchanged.")
    return "\n".join(lines)


def publish_verify(report) -> None:
    """The mismatches table (external_id, field, kind: never a value) and the verification summary."""
    rows = [{"external_id": m.external_id, "field": m.field, "kind": m.kind}
            for m in report.mismatches[:MAX_TABLE_ROWS]]
    if rows:
        shown = f" (first {MAX_TABLE_ROWS} shown)" if len(report.mismatches) > len(rows) else ""
        description = f"{len(report.mismatches)} mismatches in {report.mismatched} users{shown}"
        create_table_artifact(table=rows, key="verify-mismatches", description=description)
    create_markdown_artifact(markdown=verify_markdown(report), key="verify-summary",
                             description=f"Verify: {report.mismatched} of {report.sampled} users differ")


def verify_markdown(report) -> str:
    """The verification summary: counts, mismatches by kind with their meaning, what to do."""
    from braze_migrate.verify import KINDS

    lines = [
        f"# verify {report.source}: {'all sampled users match' if report.ok else 'mismatches found'}",
        "",
        "| sampled | matched | mismatched | set aside | export requests | 429s |",
        "|---|---|---|---|---|---|",
        (f"| {report.sampled} | {report.matched} | {report.mismatched} | {report.excluded} | "
         f"{report.requests} | {report.throttled} |"),
        "",
        ("*Set aside*: objects the state folder holds as rejected by Braze or in doubt (listed in the "
         "rejects files); they set no expectation."),
    ]
    if report.mismatches:
        lines += ["", "## Mismatches by kind", "", "| kind | count | meaning |", "|---|---|---|"]
        lines += [f"| {k} | {n} | {KINDS[k]} |" for k, n in report.kinds().items()]
        lines += ["", "## What to do", "",
                  "- Open the `verify-mismatches` table for the users and fields (values are never shown).",
                  "- `count_lower`/`value_missing` right after a load: check that the load ended Completed.",
                  "- `count_higher`: occurrences sent twice (in-doubt batches resent?) or logged elsewhere."]
    return "\n".join(lines)
