"""What the Prefect UI shows of a run: how far along it is, what went wrong, what to do now.

Counts, batch numbers, paths and external_ids only: never an email, phone, token, payload or key. Keys are
per flow (`backfill-*`, `sync-*`, `verify-*`) so each deployment's artifacts form one history in the UI.
"""

from __future__ import annotations

import logging
import math
import shlex
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from prefect import get_run_logger
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.exceptions import MissingContextError
from prefect.runtime import deployment, flow_run

from braze_migrate.progress import STAGES, Meter, ProgressEvent, eta_text, summary_text
from braze_migrate.reporting.terminal import catalog_line, identity_line
from braze_migrate.settings import section_parameters
from braze_migrate.summary import RunSummary
from connectors.states import Outcome, RunState

UPDATE_EVERY_S = 2.0  # one API call per couple of seconds, not one per batch
LOG_EVERY_S = 30.0  # a plain progress line in the run's logs (and a worker's output): per stage, not per batch
MAX_TABLE_ROWS = 500  # a table artifact is one JSON document: the CLI's --json output has every row
BUCKET_COLUMNS = ("read", *(o.value for o in Outcome), "rejected_cells")


@contextmanager
def forwarding(name: str) -> Iterator[None]:
    """WARNINGs of the logger `name` (and its children) into this task's run logs, from whichever thread logs
    them: the Braze client's "not answering" lines reach the Prefect UI, not only the worker's terminal."""
    run_logger = get_run_logger()

    class Forward(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            run_logger.log(record.levelno, "%s", record.getMessage())

    handler, logger = Forward(logging.WARNING), logging.getLogger(name)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


class Progress:
    """A progress artifact for one task of a run, updated in place and sparingly (one API call per couple of
    seconds): its bar is the share done, its description says what is done of what was planned, the rate,
    429s, retries, in-doubt batches and an ETA. Key `<kind>-progress` for loading, `<kind>-planning` for
    planning (reading the source is the first third of that bar, planning its units the rest).

    It is a progress sink (braze_migrate/progress.py); `update(done, total)` serves callers that only count
    batches."""

    def __init__(self, run_id: str | None, kind: str | None = None, *, stage: str = "loading",
                 clock=time.monotonic):
        kind = kind or flow_run.get_flow_name() or "load"
        self.run_id, self.stage = run_id, stage
        # `_sync=True`: events arrive from other threads and event loops, where Prefect's dispatching
        # helpers would otherwise return an un-awaited coroutine and the update would never be sent.
        self.artifact_id = create_progress_artifact(
            progress=0.0, key=f"{kind}-progress" if stage == "loading" else f"{kind}-{stage}", _sync=True,
            description=f"{stage.capitalize()}: starting",
        )
        self._clock = clock
        self._meters: dict[str, Meter] = {}
        self._current: Meter | None = None
        self._last = clock()
        self._sent: tuple[float, str] | None = None
        self._logged: dict[str, float] = {}  # stage → when its last progress line was logged
        self._ended: set[str] = set()  # stages whose final line was logged

    def _due_for_a_line(self, event: ProgressEvent, now: float) -> bool:
        """A plain line per stage: at its start, every LOG_EVERY_S, and at its end (once)."""
        if event.stage in self._ended:
            return False
        if event.finished:
            self._ended.add(event.stage)
            return True
        last = self._logged.get(event.stage)
        if last is None or now - last >= LOG_EVERY_S:
            self._logged[event.stage] = now
            return True
        return False

    @staticmethod
    def _log(line: str) -> None:
        with suppress(MissingContextError):  # outside a flow or task run (a test calling it directly)
            get_run_logger().info("progress: %s", line)

    def __call__(self, event: ProgressEvent) -> None:
        meter = self._meters.setdefault(event.stage, Meter(clock=self._clock))
        meter.update(event)
        self._current = meter
        now = self._clock()
        if now - self._last >= UPDATE_EVERY_S or event.finished:
            self._push(now)
        if self._due_for_a_line(event, now):
            self._log(summary_text(meter))

    def update(self, done: int, total: int) -> None:
        self(ProgressEvent("loading", done, total, "batches", finished=total > 0 and done == total))

    def finish(self) -> None:
        self._push(self._clock())

    @property
    def percent(self) -> float:
        meter = self._meters.get("loading") if self.stage == "loading" else self._current
        e = meter.event if meter else None
        if e is None or not e.total:
            return 100.0 if e is not None and e.finished else 0.0
        share = min(1.0, e.done / e.total)
        if self.stage == "planning":
            share = share / 3 if e.stage == "reading" else 1 / 3 + share * 2 / 3
        return round(100.0 * share, 2)

    def _push(self, now: float) -> None:
        self._last = now
        if self._current is None:
            if self.stage == "planning":  # nothing was planned in this task
                update_progress_artifact(self.artifact_id, 100.0, _sync=True, description=(
                    "**Planning**: nothing to plan in this task: the unfinished plan is resumed, or a first load "
                    "into this state is planned while it loads (see the load task's progress)"))
            return
        pct, text = self.percent, progress_markdown(self._meters, self.run_id, self._current)
        if (pct, text) != self._sent:
            self._sent = (pct, text)
            update_progress_artifact(self.artifact_id, pct, description=text, _sync=True)


def progress_markdown(meters: dict[str, Meter], run_id: str | None, current: Meter) -> str:
    """What the progress artifact says: each stage's done of planned with its rate and ETA; for loading also
    objects, requests/s, 429s, retries and in-doubt batches. Counts only. (A first load plans while it loads,
    so one artifact may follow both.)"""
    rows = []
    for stage in STAGES:
        meter = meters.get(stage)
        if meter is None or meter.event is None:
            continue
        e, rate = meter.event, meter.rate
        of = f" of {e.total:,}" if e.total is not None else ""
        pct = f" ({100.0 * e.done / e.total:.0f}%)" if e.total else ""
        eta = "done" if e.finished else eta_text(meter.eta_s).removeprefix("ETA ")
        if stage != "loading":
            speed = f", {rate:,.1f} {e.unit}/s" if rate is not None and (e.total or 0) > 1 else ""
            rows.append((stage, f"{e.done:,}{of} {e.unit}{pct}{speed}, " + (eta if e.finished else f"ETA {eta}")))
            continue
        req = meter.request_rate
        rows.append(("batches", f"{e.done:,}{of} acknowledged{pct}"))
        if e.objects_total is not None:
            rows.append(("objects", f"{e.objects_done:,} of {e.objects_total:,}"))
        rows += [("rate", (f"{rate:,.1f} batches/s" if rate is not None else "?")
                  + (f", {req:,.1f} requests/s" if req is not None else "")),
                 ("requests", f"{e.requests:,}"), ("rate limited (429)", f"{e.throttled:,}"),
                 ("retries", f"{e.retries:,}"), ("in-doubt batches", f"{e.in_doubt:,}")]
        left = meter.eta_s
        at = "" if left in (None, 0) else time.strftime(" (about %H:%M:%S UTC)", time.gmtime(time.time() + left))
        rows.append(("ETA", eta + at))
    e = current.event
    took = f"{current.elapsed:,.1f} s" + ("" if e.finished else " so far")
    run = f" (run `{run_id}`, {took})" if run_id else f" ({took})"
    of = f" of {e.total:,}" if e.total is not None else ""
    state = "done" if e.finished else eta_text(current.eta_s)
    head = f"**{e.stage.capitalize()}**: {e.done:,}{of} {e.unit}, {state}{run}"  # the first line shows on cards
    return "\n".join([head, "", "| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)])


class Waiting:
    """The progress artifact of a run waiting for its export's readiness marker (`<kind>-readiness`): how long it
    has waited of the deadline, what it looks for, where. A sink for `connectors.readiness.wait_ready`."""

    def __init__(self, source: str, marker: str, kind: str | None = None, clock=time.monotonic):
        kind = kind or flow_run.get_flow_name() or "load"
        self.source, self.marker, self._clock = source, marker, clock
        self._last: float | None = None
        self._logged: float | None = None
        self.artifact_id = create_progress_artifact(progress=0.0, key=f"{kind}-readiness", _sync=True,
                                                    description=f"**Waiting** for `{marker}` in `{source}`")

    def __call__(self, waited: float, deadline: float, what: str) -> None:
        now = self._clock()
        found = what.endswith("found")
        if self._logged is None or now - self._logged >= LOG_EVERY_S or found:
            self._logged = now
            with suppress(MissingContextError):
                get_run_logger().info("readiness: %s in %s (%s of %s)", what, self.source, _clock_text(waited),
                                      _clock_text(deadline))
        if not found and self._last is not None and now - self._last < UPDATE_EVERY_S:
            return
        self._last = now
        pct = 100.0 if found else min(99.0, round(100.0 * waited / deadline, 1)) if deadline else 0.0
        head = (f"**Ready**: `{self.marker}` found after {_clock_text(waited)}" if found else
                f"**Waiting** for `{self.marker}`: {_clock_text(waited)} of {_clock_text(deadline)}")
        text = "\n".join([head, "", "| | |", "|---|---|", f"| export | `{self.source}` |",
                          f"| marker | `{self.marker}` |", f"| waited | {_clock_text(waited)} |",
                          f"| deadline | {_clock_text(deadline)} (then the run ends Failed) |"])
        update_progress_artifact(self.artifact_id, pct, description=text, _sync=True)


def _clock_text(seconds: float) -> str:
    return eta_text(seconds).removeprefix("ETA ")


def intent_line(kind: str, source: str, mapping: str | None, settings, logical=None) -> str:
    """The run's first log line: what it will do (source, state, plan size when a plan exists, limit)."""
    via = f" (mapping {mapping})" if mapping else ""
    if logical is not None:
        via += f" for {logical.isoformat()}"
    try:
        size = _plan_size(settings)
    except Exception as exc:  # noqa: BLE001 - a log line never fails the run; the stages report the error
        size = f"plan size unknown ({type(exc).__name__})"
    return (f"{kind} of {source}{via} into state {settings.state}: {size}; rate limit "
            f"{settings.rate_limit}, {settings.batch_size} objects per request, in-doubt policy "
            f"{settings.in_doubt}; progress in the artifacts `{kind}-planning` and `{kind}-progress`")


def _plan_size(settings) -> str:
    """The size of the unfinished plan this run will finish first, or that the plan is made now."""
    from pathlib import Path

    from braze_migrate.run.engine import open_run_ledger

    if settings.ledger_url is None and not (Path(settings.state) / "ledger.sqlite").exists():
        return "a new plan, sized by the plan task"
    ledger = open_run_ledger(settings)
    try:
        run = ledger.unfinished_run()
        t = ledger.totals(run.run_id) if run is not None else None
    finally:
        ledger.close()
    if run is None or not t["batches"]:
        return "a new plan, sized by the plan task"
    return (f"first the unfinished plan of run {run.run_id}: {t['batches']:,} batches ({t['objects']:,} objects), "
            f"{t['batches'] - t['acknowledged_batches']:,} not yet acknowledged")


def plan_line(prepared, settings) -> str:
    """The plan's size and what loading it costs at the rate limit, logged once the plan is made."""
    from braze_migrate.run.engine import open_run_ledger
    from braze_migrate.run.public import plan_complete
    from connectors.braze.ratelimit import parse_rate

    if prepared.unchanged is not None:  # nothing planned: the export is the one an earlier run loaded
        return f"run {prepared.run_id}: {prepared.unchanged.get('message') or 'nothing to plan'}"
    if not plan_complete(prepared.plan_dir):
        return (f"run {prepared.run_id}: a first load into this state is planned while it loads, so the `load` "
                "task plans and sends at once (its progress artifact shows planning and loading)")

    ledger = open_run_ledger(settings)
    try:
        t = ledger.totals(prepared.run_id)
    finally:
        ledger.close()
    rate = parse_rate(settings.rate_limit)
    left = t["batches"] - t["acknowledged_batches"]
    what = "resuming the unfinished plan" if prepared.resumed else RunState.PLANNED.value
    return (f"run {prepared.run_id} {what}: {t['batches']:,} batches ({t['objects']:,} objects), {left:,} to send"
            + loading_time(left, rate.requests, rate.seconds))


def loading_time(batches: int, requests: int, seconds: float) -> str:
    """What sending `batches` costs at the rate limit (`requests` per `seconds`), as the plan line's tail: a lower
    bound (a batch is one request or more), in whole seconds from one second on; "under a second" below it
    (a small plan's bound rounds to 0:00, which reads as no time at all); nothing when there is nothing to send."""
    if batches <= 0:
        return ": nothing to send"
    at_limit = batches * seconds / requests
    limit = f"{requests}/{seconds:g}s"
    if at_limit < 1:
        return f"; at {limit} that is under a second of loading"
    return f"; at {limit} that is at least {eta_text(math.floor(at_limit)).removeprefix('ETA ')} of loading"


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
    if summary.unchanged_since:
        return f"{summary.status}: unchanged since run {summary.unchanged_since}, nothing sent"
    if summary.status == "held":
        return f"held: nothing sent, {summary.batches:,} batches planned and kept until accepted"
    line = (f"{summary.status}: {summary.total(Outcome.ACKNOWLEDGED)} of {summary.total('read')} rows acknowledged, "
            f"{summary.total(Outcome.UNCHANGED)} unchanged, {summary.total(Outcome.REJECTED)} rejected, "
            f"{summary.total(Outcome.PENDING)} pending")
    return line + (" - resume needed" if summary.resume_command else "")


def report_markdown(summary: RunSummary, deployment_name: str | None = None) -> str:
    """The run report: headline, what it cost, what went wrong, what to do (from the CLI, and from
    Prefect when the run came from the deployment `deployment_name`)."""
    s = summary
    if s.unchanged_since:
        return unchanged_markdown(s)
    if s.status == "held":
        return held_markdown(s, deployment_name)
    dp = s.data_points
    duration = s.duration_s or 0.0
    throughput = s.requests / duration if duration else 0.0
    pending = s.total(Outcome.PENDING)
    rejected = s.total(Outcome.REJECTED) + s.total("rejected_cells")
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
        f"| duration | {duration:.1f} s" + (" (waiting apart, below)" if s.waited_s else "") + " |",
        f"| throughput | {throughput:.1f} requests/s |",
        *([f"| waited | {s.waited_s:.1f} s (for the export, for a decision): not in duration nor throughput |"]
          if s.waited_s else []),
        *([f"| export | {s.export} |"] if s.export else []),
        f"| rejects file | `{s.rejects_file}` ({s.rejects} entries) |",
        "",
        "## Rows per bucket",
        "",
        "| dataset | read | acknowledged | rejected | unchanged | pending | rejected cells |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += ["| " + " | ".join(str(r[c]) for c in ("dataset", *BUCKET_COLUMNS)) + " |" for r in bucket_rows(s)]
    lines += decisions_markdown(s)
    if s.in_doubt:
        lines += ["", "## In doubt (sent, then no definite answer: may have landed)", ""]
        lines += [f"- batch {b.batch_no}: {b.events} events, {b.purchases} purchases: {b.action}"
                  for b in s.in_doubt]
    if s.deletes:  # user deletes (braze_migrate/ops/deletes.py)
        d = s.deletes
        lines += ["", "## User deletes", "",
                  f"{len(d['deleted_ids'])} deleted, {len(d['pending_ids'])} pending"
                  + (" — **held by the guard**: " + (s.message or "") if d["held"] else ""), ""]
        lines += [f"- `{eid}`" for eid in d["deleted_ids"][:200]]
    if s.catalogs:  # catalog syncs (braze_migrate/ops/catalogs.py)
        lines += ["", "## Catalogs", ""] + [f"-{catalog_line(c)[1:]}" for c in s.catalogs]
    if s.identities:  # identify / rename / remove (braze_migrate/ops/identities.py): counts only
        lines += ["", "## Identity requests", "", identity_line(s.identities)
                  + (" — **held by the guard**: " + (s.message or "") if s.identities["held"] else "")]
    lines += ["", "## What to do", ""]
    for note in s.notes:
        lines.append(f"- Note: {note}")
    if s.resume_command:
        lines.append(f"- **{pending} rows are pending.** In this order (acknowledged batches are skipped):")
        lines += [f"  {i}. `{step.command}`: {step.why}" for i, step in enumerate(s.advice, 1)]
        if not s.advice:
            lines.append(f"  1. `{s.resume_command}`")
        if deployment_name:
            lines.append(f"- Instead of the plain resume, from Prefect, run the deployment again on the same source "
                         f"and state: `prefect deployment run '{deployment_name}' -p source={s.source} "
                         f"-p state={s.state}` (or press Retry)")
    lines += reject_warnings(s, rejected)
    if not s.resume_command and not rejected:
        lines.append("- Nothing: every row was acknowledged by Braze or unchanged.")
    return "\n".join(lines)


def reject_warnings(s: RunSummary, rejected: int) -> list[str]:
    """What to do about the rejects, by kind: a warehouse error is fixed there and the next run sends the fix; a
    row of a user deleted from Braze (an erasure) stays rejected whatever the warehouse does, until undeleted."""
    erased = min(s.erased, rejected)
    lines = []
    if rejected - erased:
        lines.append(f"- **Warning:** {rejected - erased} rows or cells were rejected, each with its reason: open "
                     f"`{s.rejects_file}`, fix them in the warehouse; the next run sends the fixes.")
    if erased:
        lines.append(f"- {erased} rows belong to users deleted from Braze (user_deletes) and were not loaded: "
                     f"erasure is permanent, so every later export's rows of them are rejected too (listed in "
                     f"`{s.rejects_file}`); nothing to fix in the warehouse. Only if a deletion was a mistake: "
                     f"`braze-migrate undelete ID --state {s.state}`, then the next run loads that user again.")
    return lines


def decisions_markdown(s: RunSummary) -> list[str]:
    """The decisions a person took during the run: what was asked, the answer, who, when, how long it waited."""
    if not s.decisions:
        return []
    lines = ["", "## Decisions", "", "| asked | answer | by | at | waited |", "|---|---|---|---|---:|"]
    lines += [f"| {d['asked']} | {d['decision'] or 'nobody answered: held'} | {d['by']} | {d['at']} | "
              f"{d['waited_s']:.0f} s |" for d in s.decisions]
    return lines


def unchanged_markdown(s: RunSummary) -> str:
    """The report of a run whose export is the one an earlier run completed: nothing planned, nothing sent."""
    return "\n".join([
        f"# {s.kind} {s.run_id}: unchanged since run {s.unchanged_since}", "",
        (f"**Nothing was sent.** The export `{s.source}` is identical to the one run `{s.unchanged_since}` loaded "
        "and completed (same files, sizes and modification times, same mapping and plan settings)."), "",
        *([f"Export: {s.export}", ""] if s.export else []),
        "## What to do", "",
        "- If tonight's export should be new, check the warehouse's export job: it did not write a new export.",
        ("- To plan it again anyway: `-p readiness='{\"skip_unchanged\": false}'` (deployment) or "
         "`--no-skip-unchanged` (CLI)."),
    ])


def held_markdown(s: RunSummary, deployment_name: str | None = None) -> str:
    """The report of a run the guards held: nothing sent, what was held, how to accept it exactly."""
    from braze_migrate.run.public import GuardReport

    report = GuardReport.from_dict(s.guards or {})
    accept = report.accept_value()
    lines = [f"# {s.kind} {s.run_id}: held, nothing was sent", "",
             f"Source `{s.source}`, state `{s.state}`: {s.batches:,} batches planned and kept, none sent.", "",
             "## What was held", ""]
    # The guards' figures; a hold of the deletes, identity requests or catalog deletes has its own message.
    lines += [f"- {f.text()}" for f in report.held] or [f"- {s.message or 'held'}"]
    lines += decisions_markdown(s)
    lines += ["", "## To accept it (the held plan is sent exactly as planned, not planned again)", ""]
    if s.resume_command:
        lines.append(f"- From the CLI: `{s.resume_command}`")
    if deployment_name:
        given = accept_parameters(s.resume_command) if s.resume_command else []
        if not given and accept:
            given = section_parameters({"accept": accept.split(",")})
        lines.append(f"- From Prefect (a new run of the deployment): `prefect deployment run '{deployment_name}' "
                     f"-p source={s.source} -p state={s.state}" + "".join(f" -p {p}" for p in given) + "`")
    lines += ["", ("If the export is broken instead, fix it upstream and run again: the held plan, of which "
              "nothing was sent, is dropped and the fixed export planned afresh.")]
    return "\n".join(lines)


def accept_parameters(resume_command: str) -> list[str]:
    """The deployment parameters that do what the flags a held run's resume command adds do, each in its section
    (docs/prefect.md, "Parameters"): `--accept A,B` -> `'guards={"accept": ["A", "B"]}'`, switches such as
    `--catalog-deletes --allow-mass-delete` -> `'catalogs={"catalog_deletes": true}'
    'deletes={"allow_mass_delete": true}'`."""
    from braze_migrate.settings import LoadSettings

    words = shlex.split(resume_command)
    given: dict = {}
    for i, word in enumerate(words):
        name = word.removeprefix("--").replace("-", "_")
        if word == "--accept" and i + 1 < len(words):
            given["accept"] = words[i + 1].split(",")
        elif word.startswith("--") and LoadSettings.model_fields.get(name) is not None \
                and LoadSettings.model_fields[name].annotation is bool:
            given[name] = True
    return section_parameters(given)


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
    from braze_migrate.ops.verify import KINDS

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
