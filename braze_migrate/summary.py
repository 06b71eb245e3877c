"""The typed result of a run: `RunSummary`, returned by the flows and the inline path, rendered by the CLI
table, `--json` and the Prefect artifacts, and stored with the run in the ledger.

Its JSON (`to_json`) keeps the keys the untyped summary had, so scripts reading `--json` keep working.
Counts, ids, paths and commands only: never a value from the data. To add a figure, add a field with a
default (older ledgers' summaries still load) and render it where it matters.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class RunUnfinished(Exception):
    """The data of a Failed flow state: Prefect resolves a Failed state's data into an exception (a plain summary
    there makes it log "cannot be resolved into an exception" with a traceback). `summary` is the whole summary."""

    def __init__(self, message: str, summary: RunSummary | dict | None = None):
        super().__init__(message)
        self.summary = summary

    def __reduce__(self):
        return type(self), (str(self), self.summary)


class RunKind(StrEnum):
    BACKFILL = "backfill"
    SYNC = "sync"


class RunStatus(StrEnum):
    """How a run ended: everything final (`completed`), some rows pending for the next run (`incomplete`),
    or stopped with batches never sent (`interrupted`: run the same command to resume), or held by the guards
    with nothing sent (`held`)."""

    COMPLETED = "completed"
    INCOMPLETE = "incomplete"
    INTERRUPTED = "interrupted"
    HELD = "held"  # the guards held the plan before anything was sent (guards.py): accept it or fix the export


class Buckets(BaseModel):
    """Where one dataset's rows went: read = acknowledged + rejected + unchanged + pending."""

    model_config = ConfigDict(extra="allow")

    read: int = 0
    acknowledged: int = 0
    rejected: int = 0
    unchanged: int = 0
    pending: int = 0
    rejected_cells: int = 0


class InDoubtBatch(BaseModel):
    """A batch sent without a definite answer, and what the run did about its events and purchases."""

    batch_no: int
    events: int
    purchases: int
    action: str


class AdviceStep(BaseModel):
    """One thing to do after a run: the exact command and why (braze_migrate/run/advice.py decides)."""

    command: str
    why: str


class DataPoints(BaseModel):
    sent: int = 0
    full_resend: int = 0


class WorkerReport(BaseModel):
    """One load worker's totals (parallel flows and `load-worker`)."""

    model_config = ConfigDict(extra="allow")

    worker_id: str
    pid: int | None = None
    batches: int = 0
    acknowledged: int = 0
    pending: int = 0
    requests: int = 0
    throttled: int = 0
    leases: int = 0


class UnreadFile(BaseModel):
    """A file of the export folder that no dataset reads, and why (a warning; an error under --strict)."""

    path: str
    reason: str


class RunSummary(BaseModel):
    """One run's outcome: the buckets per dataset, what it cost, what is left and how to resume it."""

    model_config = ConfigDict(extra="allow")

    run_id: str
    kind: RunKind
    source: str
    state: str
    status: RunStatus
    resumed: bool = False
    requests: int = 0
    batches: int = 0
    acknowledged_batches: int = 0
    retries: int = 0
    throttled: int = 0
    in_doubt: list[InDoubtBatch] = Field(default_factory=list)
    # Events and purchases that earlier runs still hold in doubt (run id -> count): `settle RUN --check` decides
    # them; until then every later run counts them pending (braze_migrate/run/advice.py).
    unsettled: dict[str, int] = Field(default_factory=dict)
    datasets: dict[str, Buckets] = Field(default_factory=dict)
    data_points: DataPoints = Field(default_factory=DataPoints)
    requests_full_resend: int = 0
    rejects_file: str = ""
    rejects: int = 0
    duration_s: float = 0.0
    notes: list[str] = Field(default_factory=list)
    unread: list[UnreadFile] = Field(default_factory=list)  # files of the export no dataset reads
    erased: int = 0  # rejected rows of users deleted from Braze (permanent until `braze-migrate undelete ID`)
    suspicious: int = 0  # rows and cells flagged as suspicious (held or sent, in the rejects file)
    resume_command: str | None = None
    workers: list[WorkerReport] | None = None  # parallel flows only
    drained_batches: int | None = None  # parallel flows only
    guards: dict | None = None  # the guard figures (guards.GuardReport.to_dict()) when the run was checked
    message: str | None = None  # a held run: every figure over its threshold and the flag that accepts it
    deletes: dict | None = None  # user deletes of the run (braze_migrate/ops/deletes.py DeleteReport.to_dict())
    catalogs: list[dict] | None = None  # catalog syncs of the run (braze_migrate/ops/catalogs.py CatalogReport.to_dict())
    unchanged_since: str | None = None  # the export is the one run X completed: nothing planned, nothing sent
    waited_s: float | None = None  # seconds spent waiting (for the export, for a decision): not in duration_s
    decisions: list[dict] | None = None  # guard/in-doubt decisions: what was asked, the answer, who, when
    export: str | None = None  # readiness: which marker was found after how long (connectors/readiness.py)
    advice: list[AdviceStep] = Field(default_factory=list)  # what to do next, in order (braze_migrate/run/advice.py)
    identities: dict | None = None  # identify/rename/remove requests (braze_migrate/ops/identities.py IdentityReport)

    @property
    def ok(self) -> bool:
        return self.status is RunStatus.COMPLETED

    def total(self, bucket: str) -> int:
        """One bucket summed over the datasets."""
        return sum(getattr(b, bucket) for b in self.datasets.values())

    def to_json(self) -> dict[str, Any]:
        """The `--json` object (and what the ledger stores): today's keys; parallel-only keys when set."""
        optional = ("workers", "drained_batches", "guards", "message", "deletes", "catalogs", "unchanged_since",
                    "waited_s", "decisions", "export", "identities")
        return self.model_dump(mode="json", exclude_none=False,
                               exclude={k for k in optional if getattr(self, k) is None})

    @classmethod
    def coerce(cls, summary: RunSummary | dict) -> RunSummary:
        """A summary from a run, or from its JSON (a ledger row, `--json` output)."""
        return summary if isinstance(summary, RunSummary) else cls.model_validate(summary)
