"""What the Prefect UI shows of a run: progress, the buckets table and a run report. Counts only."""

from __future__ import annotations

import time

from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

UPDATE_EVERY_S = 2.0  # one API call per couple of seconds, not one per batch


class Progress:
    """A progress artifact (batches acknowledged of planned), updated in place and sparingly."""

    def __init__(self, run_id: str):
        self.artifact_id = create_progress_artifact(
            progress=0.0, key="braze-load-progress", description=f"Batches answered by Braze, run {run_id}"
        )
        self._last = 0.0
        self._pct = 0.0

    def update(self, done: int, total: int) -> None:
        self._pct = 100.0 if total == 0 else round(100.0 * done / total, 2)
        now = time.monotonic()
        if now - self._last >= UPDATE_EVERY_S or done == total:
            self._last = now
            update_progress_artifact(self.artifact_id, self._pct)

    def finish(self) -> None:
        update_progress_artifact(self.artifact_id, self._pct)


def publish_summary(summary: dict) -> None:
    """The buckets table and the markdown run report of a finished (or stopped) run."""
    rows = [{"dataset": name, **{k: v for k, v in b.items()}} for name, b in summary["datasets"].items()]
    create_table_artifact(table=rows, key="braze-load-buckets",
                          description=f"Rows per bucket, run {summary['run_id']} ({summary['status']})")
    create_markdown_artifact(markdown=report_markdown(summary), key="braze-load-report",
                             description=f"Run report {summary['run_id']}")


def report_markdown(summary: dict) -> str:
    dp = summary["data_points"]
    saved = dp["full_resend"] - dp["sent"]
    lines = [
        f"# {summary['kind']} {summary['run_id']}: {summary['status']}",
        "",
        f"- source: `{summary['source']}`, state: `{summary['state']}`" + (" (resumed)" if summary["resumed"] else ""),
        f"- requests: {summary['requests']} in {summary['batches']} batches "
        f"({summary['acknowledged_batches']} acknowledged); full resend would need {summary['requests_full_resend']}",
        f"- rate limited (429): {summary['throttled']}; retries: {summary['retries']}",
        f"- data points sent: {dp['sent']} (full resend: {dp['full_resend']}, saved {saved})",
        f"- duration: {summary['duration_s']:.1f} s; throughput: "
        f"{(summary['requests'] / summary['duration_s']) if summary['duration_s'] else 0:.0f} requests/s",
        f"- rejects file: `{summary['rejects_file']}` ({summary['rejects']} entries)",
        "",
        "| dataset | read | acknowledged | rejected | unchanged | pending | rejected cells |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, b in summary["datasets"].items():
        lines.append(f"| {name} | {b['read']} | {b['acknowledged']} | {b['rejected']} | {b['unchanged']} | "
                     f"{b['pending']} | {b['rejected_cells']} |")
    if summary["in_doubt"]:
        lines += ["", "## In doubt (may have landed: check these batches)", ""]
        lines += [f"- batch {b['batch_no']}: {b['events']} events, {b['purchases']} purchases — {b['action']}"
                  for b in summary["in_doubt"]]
    if summary.get("resume_command"):
        lines += ["", f"**What to do:** `{summary['resume_command']}`"]
    elif summary["rejects"]:
        lines += ["", f"**Warning:** {summary['rejects']} rejected rows or cells — open the rejects file."]
    return "\n".join(lines)
