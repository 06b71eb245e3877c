"""One run's life over a state folder: plan (or resume the unfinished plan) → apply → commit → summary.

`braze_migrate.run.stages` wraps these steps as functions of plain parameters, which the flows run as tasks and
`--no-prefect` calls directly. A run that was planned is always finished before anything new is planned,
the way a loader finishes pending loads before extracting more.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import polars as pl

from braze_migrate.commit import accounting as report
from braze_migrate.commit.committer import commit_run
from braze_migrate.load.applier import apply_plan
from braze_migrate.ops import retention
from braze_migrate.ops.settle import auto_settle
from braze_migrate.plan.checks import write_rules
from braze_migrate.plan.contract import accept_type_changes
from braze_migrate.plan.planner import UnitsRunner, build_plan, plan_complete, scan_batches
from braze_migrate.progress import ProgressEvent, ProgressSink
from braze_migrate.run.pipeline import plan_and_apply
from braze_migrate.settings import ConfigError, LoadSettings, flag_options
from braze_migrate.summary import DataPoints, RunStatus, RunSummary, UnreadFile
from connectors.errors import SourceError
from connectors.sources import is_mapping_file, source_fingerprint, unread_files
from connectors.state.integrity import require_intact
from connectors.state.ledger_base import LedgerBase, LedgerUnavailable
from connectors.state.ledgers import open_ledger
from connectors.state.private import open_private, prove_writable
from connectors.state.snapshot import Snapshot
from connectors.states import UNFINISHED_BATCHES, HeldReason, Outcome, RunState

FINISHED = "all_stages_done"  # in a stored summary: every stage of the run ended (see Engine.finished)
UNREAD_FILE = "unread.json"  # in the plan: files of the export no dataset reads, for the summary


@dataclass
class Prepared:
    """A run ready to load: new, or the unfinished one being resumed."""

    run_id: str
    plan_dir: Path
    resumed: bool
    batches: int
    notes: list[str] = field(default_factory=list)
    unchanged: dict | None = None  # the export is the one the last completed run loaded: its summary, final


class Engine:
    """The state folder's ledger and snapshot, and the steps of a run over them."""

    def __init__(self, settings: LoadSettings):
        self.settings = settings
        self.state = open_private(Path(settings.state))  # 0700, files 0600: it holds personal data
        self.ledger = open_run_ledger(settings)
        self.snapshot = Snapshot(self.state)

    def close(self) -> None:
        self.ledger.close()

    def run_dir(self, run_id: str) -> Path:
        return self.state / "runs" / run_id

    def prepare(self, kind: str, source: str, mapping: str | None = None, *,
                on_progress: ProgressSink | None = None, plan_while_loading: bool = True,
                units_runner: UnitsRunner | None = None) -> Prepared:
        """Resume the unfinished run of this source, or plan a new run (reading and planning events go to
        `on_progress`). `plan_while_loading=False`: plan a first load completely here too (the parallel flows
        hand a complete plan to their workers)."""
        require_intact(self.state, self.ledger)  # a damaged snapshot would resend what Braze acknowledged
        source = str(source)
        mapping = str(mapping) if mapping else None
        unfinished = self.ledger.unfinished_run()
        notes = []
        if unfinished is not None and unfinished.status == RunState.PLANNING:
            # Died while planning: nothing was sent, so the plan can be thrown away.
            shutil.rmtree(self.run_dir(unfinished.run_id), ignore_errors=True)
            self.ledger.set_run_status(unfinished.run_id, RunState.ABANDONED)
            unfinished = None
        if unfinished is not None and unfinished.status == RunState.HELD and (
                unfinished.source != source or (unfinished.settings or {}).get("mapping") != mapping
                or unfinished.source_fingerprint != source_fingerprint(source, mapping)):
            # Held by the guards (guards.py), so nothing of it was sent: a fixed or another export replaces it.
            shutil.rmtree(self.run_dir(unfinished.run_id), ignore_errors=True)
            self.ledger.set_run_status(unfinished.run_id, RunState.ABANDONED)
            notes.append(f"run {unfinished.run_id}, held by the guards, was dropped: the export changed since")
            unfinished = None
        if unfinished is not None:
            recorded = (unfinished.settings or {}).get("mapping")
            if unfinished.source != source or recorded != mapping:
                again = f" --mapping {recorded}" if recorded else ""
                raise ConfigError(
                    f"run {unfinished.run_id} of {unfinished.source} is unfinished in {self.state}: finish it first "
                    f"with `braze-migrate {unfinished.kind} {unfinished.source}{again} --state {self.state}`"
                )
            if unfinished.source_fingerprint != source_fingerprint(source, mapping):
                notes.append("the source changed since this run was planned: finishing the planned run first; "
                             "run the command again to load the changes")
            n = len(self.ledger.batch_statuses(unfinished.run_id))
            return Prepared(unfinished.run_id, self.run_dir(unfinished.run_id) / "plan", True, n, notes)

        s = self.settings
        if s.auto_settle:  # held occurrences Braze's answers can decide are settled before anything is planned
            notes += auto_settle(self.state, self.ledger, partial(_exporter, s))
        fingerprint = source_fingerprint(source, mapping)
        if s.skip_unchanged and (since := self._unchanged_since(source, mapping, fingerprint)) is not None:
            return self._unchanged(kind, source, mapping, fingerprint, since, notes)
        unread = unread_files(source, mapping=mapping)
        if s.strict and unread:
            raise SourceError(f"{len(unread)} file(s) of the export are not read (--strict): {unread[0].path}: "
                              f"{unread[0].reason}; rename or remove them, or drop --strict")
        if s.accept_type_change:
            accept_type_changes(self.state, self.ledger, s.accept_type_change)
        run_id = self.ledger.new_run(kind, source, fingerprint, {**_public_settings(s), "mapping": mapping})
        plan_dir = self.run_dir(run_id) / "plan"
        write_rules(plan_dir, s, datetime.now(UTC).date())
        if plan_while_loading and self._pipelined():
            # Nothing committed yet, so no guard has figures to hold a plan on: plan while loading (`apply`).
            self.ledger.set_run_status(run_id, RunState.LOADING)
            plan_dir.mkdir(parents=True, exist_ok=True)
            (plan_dir / UNREAD_FILE).write_text(json.dumps([{"path": u.path, "reason": u.reason} for u in unread]))
            return Prepared(run_id, plan_dir, False, 0, notes)
        info = build_plan(source, self.snapshot, plan_dir, batch_size=s.batch_size, batch_mode=s.batch_mode,
                          resend_in_doubt=s.in_doubt == "resend",
                          users_per_partition=s.users_per_partition, mapping=mapping, on_progress=on_progress,
                          units_runner=units_runner)
        (plan_dir / UNREAD_FILE).write_text(json.dumps([{"path": u.path, "reason": u.reason} for u in unread]))
        batches = scan_batches(plan_dir, ["batch_no", "n_attributes", "n_events", "n_purchases"]).collect()
        self.ledger.add_batches(run_id, (
            (b, (e + p) > 0, a + e + p) for b, a, e, p in batches.iter_rows()
        ))
        self.ledger.set_run_status(run_id, RunState.PLANNED)
        return Prepared(run_id, plan_dir, False, info.batches, notes)

    def _unchanged_since(self, source: str, mapping: str | None, fingerprint: str) -> str | None:
        """The run that first loaded this very export, when the last committed run completed it with the same
        plan settings (a run left pending, or another mapping or batch size, plans again). Files only: a SQL
        source's fingerprint is its queries, not its data, so it is always planned."""
        if is_mapping_file(source):
            return None
        last = next((r for r in self.ledger.runs(limit=50) if r.status == RunState.COMMITTED), None)
        if last is None or last.source_fingerprint != fingerprint or not last.summary:
            return None
        if last.summary.get("status") != RunStatus.COMPLETED.value or not last.summary.get(FINISHED):
            return None  # left something pending, or stopped before its last stage (deletes, catalogs) ended
        loaded = self.ledger.run(last.summary.get("unchanged_since") or last.run_id)
        if self.ledger.lifted_since(loaded.updated_at or loaded.created_at):
            return None  # a user was undeleted since that run loaded the export: the same export now loads them
        now = _public_settings(self.settings)
        if any((last.settings or {}).get(name) != now.get(name) for name in flag_options("plan")):
            return None
        return last.summary.get("unchanged_since") or last.run_id

    def _unchanged(self, kind: str, source: str, mapping: str | None, fingerprint: str, since: str,
                   notes: list[str]) -> Prepared:
        """Record a run that sends nothing: the export is the one run `since` completed."""
        run_id = self.ledger.new_run(kind, source, fingerprint, {**_public_settings(self.settings), "mapping": mapping})
        message = f"unchanged since run {since}: the export is the one that run loaded; nothing was sent"
        summary = RunSummary(run_id=run_id, kind=kind, source=source, state=str(self.state),
                             status=RunStatus.COMPLETED, unchanged_since=since, message=message,
                             notes=[*notes, message])
        self.finished(summary)
        return Prepared(run_id, self.run_dir(run_id) / "plan", False, 0, summary.notes, unchanged=summary.to_json())

    def _pipelined(self) -> bool:
        """A first load into this state (no run committed yet) is planned while it loads (pipeline.py)."""
        return not any(r.status == RunState.COMMITTED for r in self.ledger.runs(limit=1_000_000))

    def apply(self, prepared: Prepared, endpoint: str, api_key: str, *, on_progress=None, transport=None,
              on_plan_progress: ProgressSink | None = None):
        """Send the plan (`on_plan_progress`: the planner's events when a first load plans while it loads).
        Before the first request, the run proves it can write everything its commit will write (exit 6 if not)."""
        prove_writable([self.snapshot.root, self.snapshot.root / "users", self.state / "seen",
                        self.run_dir(prepared.run_id)], self.state)
        self.ledger.set_run_status(prepared.run_id, RunState.LOADING)
        if not plan_complete(prepared.plan_dir):
            run = self.ledger.run(prepared.run_id)
            _, stats = plan_and_apply(prepared.run_id, run.source, self.snapshot, prepared.plan_dir, self.ledger,
                                      self.settings, endpoint, api_key, mapping=(run.settings or {}).get("mapping"),
                                      resume=True, on_progress=on_progress, transport=transport,
                                      on_plan_progress=on_plan_progress)
            return stats
        stats = apply_plan(prepared.run_id, prepared.plan_dir, self.ledger, self.settings, endpoint, api_key,
                           on_progress=on_progress, transport=transport)
        return stats

    def finish(self, prepared: Prepared, *, started: float) -> dict:
        """`summarize`, as the summary's JSON (what `--json` prints)."""
        return self.summarize(prepared, started=started).to_json()

    def summarize(self, prepared: Prepared, *, started: float, on_progress: ProgressSink | None = None) -> RunSummary:
        """Commit what Braze acknowledged and build the summary. A stopped run stays open for resuming."""
        emit = on_progress or (lambda event: None)
        emit(ProgressEvent("committing", 0, 1, "steps", detail="snapshot, rejects file, summary"))
        run = self.ledger.run(prepared.run_id)
        statuses = self.ledger.batch_statuses(prepared.run_id)
        unsent = sum(1 for s in statuses.values() if s in UNFINISHED_BATCHES)
        unsent += not plan_complete(prepared.plan_dir)  # stopped while later units were still to plan
        outcome = commit_run(prepared.run_id, prepared.plan_dir, self.ledger, self.snapshot,
                             in_doubt_policy=self.settings.in_doubt)
        rejects_path = self.run_dir(prepared.run_id) / "rejects.csv"
        n_rejects = report.write_rejects(prepared.plan_dir, outcome, rejects_path)
        datasets = report.buckets(prepared.plan_dir, outcome)
        totals = self.ledger.totals(prepared.run_id)
        emit(ProgressEvent("committing", 1, 1, "steps", finished=True))
        stats = json.loads((prepared.plan_dir / "stats.json").read_text())
        pending = sum(d[Outcome.PENDING] for d in datasets.values())
        status = (RunStatus.INTERRUPTED if unsent else
                  RunStatus.COMPLETED if pending == 0 else RunStatus.INCOMPLETE)
        resume = None
        if status is not RunStatus.COMPLETED:
            mapping = (run.settings or {}).get("mapping")
            resume = (f"braze-migrate {run.kind} {run.source}" + (f" --mapping {mapping}" if mapping else "")
                      + f" --state {self.state}")  # what else to do first: run/advice.py
        acked = outcome.filter(outcome["outcome"] == Outcome.ACKNOWLEDGED)
        unread_json = prepared.plan_dir / UNREAD_FILE
        unread = [UnreadFile(**u) for u in json.loads(unread_json.read_text())] if unread_json.exists() else []
        suspicious = report.suspicious_count(prepared.plan_dir)
        summary = RunSummary(
            run_id=prepared.run_id,
            kind=run.kind,
            source=run.source,
            state=str(self.state),
            status=status,
            resumed=prepared.resumed,
            requests=totals["requests"],
            batches=totals["batches"],
            acknowledged_batches=totals["acknowledged_batches"],
            retries=totals["retries"],
            throttled=totals["throttled"],
            in_doubt=report.in_doubt_batches(outcome),
            unsettled=self.unsettled(prepared.run_id),
            datasets=datasets,
            data_points=DataPoints(sent=int(acked["data_points"].sum() or 0),
                                   full_resend=stats["full_resend"]["data_points"]),
            requests_full_resend=math.ceil(stats["full_resend"]["objects"] / max(1, self.settings.batch_size)),
            rejects_file=str(rejects_path),
            rejects=n_rejects,
            erased=report.erased_count(prepared.plan_dir),
            duration_s=round(time.monotonic() - started, 3),
            notes=prepared.notes + [f"not read: {u.path}: {u.reason}" for u in unread]
            + ([f"{suspicious} suspicious rows or cells ({self.settings.suspicious}): see the rejects file"]
               if suspicious else []),
            unread=unread,
            suspicious=suspicious,
            resume_command=resume,
        )
        self.record(summary)
        if summary.status is not RunStatus.INTERRUPTED:
            retention.prune(self.state, self.ledger, self.settings.plan_retention_days)
        return summary

    def unsettled(self, run_id: str) -> dict[str, int]:
        """Events and purchases held in doubt by runs before `run_id` (snapshot `held`): run id -> count."""
        held = (self.snapshot.scan("held")
                .filter((pl.col("status") == HeldReason.IN_DOUBT) & (pl.col("run_id") != run_id))
                .group_by("run_id").len().sort("run_id").collect())
        return {r: int(n) for r, n in held.iter_rows()}

    def finished(self, summary: RunSummary) -> None:
        """Store the final summary of a run whose every stage ended, marked so: only such a run's export can be
        "unchanged since" (a run stopped after its commit but before its deletes or catalogs must go on)."""
        if summary.status is RunStatus.COMPLETED:
            self.ledger.set_run_status(summary.run_id, RunState.COMMITTED, {**summary.to_json(), FINISHED: True})

    def record(self, summary: RunSummary) -> None:
        """Store the summary with its run: committed when every batch is final, else still loading."""
        final = summary.status in (RunStatus.COMPLETED, RunStatus.INCOMPLETE)
        self.ledger.set_run_status(summary.run_id, RunState.COMMITTED if final else RunState.LOADING, summary.to_json())


def _exporter(settings: LoadSettings):
    """A reader of Braze profiles for the in-doubt check; raises BrazeConfigError without credentials."""
    from braze_migrate.run.credentials import resolve_credentials
    from connectors.braze.export import BrazeExporter
    from connectors.braze.outcomes import BrazeConfigError

    try:
        endpoint, api_key = resolve_credentials(settings)
    except ConfigError as exc:
        raise BrazeConfigError(None, what=f"is not configured ({exc})") from None
    return BrazeExporter(endpoint, api_key)


def open_run_ledger(settings: LoadSettings) -> LedgerBase:
    """The ledger the settings name: PostgreSQL by `ledger_url`, else SQLite in the state folder."""
    url = settings.ledger_url.get_secret_value() if settings.ledger_url else None
    try:
        return open_ledger(Path(settings.state), url)
    except LedgerUnavailable as exc:
        raise ConfigError(str(exc)) from None


def _public_settings(s: LoadSettings) -> dict:
    """Settings worth recording with a run (the ledger URL may hold a password: left out)."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in s.model_dump(exclude={"ledger_url"}).items()}
