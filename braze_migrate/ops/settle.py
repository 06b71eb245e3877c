"""`braze-migrate settle`: decide what became of events and purchases held *in doubt*.

A request answered with a 5xx, a timeout or nothing at all may have been applied; Braze never deduplicates
occurrences, so `--in-doubt skip` holds them (snapshot `held`, ledger outcome `pending`) and every later
run reports them. Settling ends that, in the ledger first (so `repair` replays the same decision) and then
in the snapshot:

- `delivered`: Braze has them. Their ids join the acknowledged ones; they are never sent.
- `resend`: Braze does not have them. They leave `held`, so the next sync sends them once.

`check_in_doubt` decides from what Braze holds, read back with `/users/export/ids`: events and purchases
come back only as per-name aggregates `{name, first, last, count}` (last 90 days), so only time can
decide, per user and name (product id for purchases):

- not delivered, when Braze has no occurrence of that name for the user, or its `last` is earlier than
  every held one (a delivered occurrence at time T makes `last` ≥ T);
- delivered, when `last` is exactly the latest held time and `count` is at least the number held;
- undecided otherwise: an occurrence older than 90 days, a `last` later than the held times (anything
  later, from the SDK or a later load, hides them), or a user Braze does not know. Counts cannot decide
  alone because other sources (SDKs, other loaders) write the same names. Undecided batches stay held for
  `settle RUN --delivered|--resend` by a person.
A batch is settled only when every held occurrence in it points the same way.

`auto_settle` runs that check before every new run (`--auto-settle`, on by default) for the runs committed
at least AUTO_AFTER_S ago (Braze advises waiting minutes before reading a write back), so held occurrences
are settled without a person wherever the answers decide, and only the undecided ones are left to one.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import orjson
import polars as pl

from braze_migrate.plan.planner import object_files, scan_batches
from connectors.state.integrity import journal_for, require_intact
from connectors.state.ledger_base import LedgerBase
from connectors.state.settlements import Decision
from connectors.state.snapshot import Snapshot
from connectors.states import HeldReason, RunState

OCCURRENCES = ("events", "purchases")
WINDOW_DAYS = 90  # Braze's aggregates cover the last 90 days (braze-api.md, "Reading back")
AUTO_AFTER_S = 600  # writes usually show within 100 ms, but Braze advises waiting minutes before reading back


class SettleError(Exception):
    """The run or batches cannot be settled as asked; the message says why and what to do."""


@dataclass
class SettleReport:
    """Batches settled per decision, occurrences settled, and batches left undecided (by a check)."""

    run_id: str
    settled: dict[int, Decision] = field(default_factory=dict)
    occurrences: int = 0
    undecided: list[int] = field(default_factory=list)
    counts: dict[int, tuple[int, int]] = field(default_factory=dict)  # batch → (events, purchases) held in doubt


def held_objects(state: Path, ledger: LedgerBase, run_id: str) -> pl.DataFrame:
    """The run's events and purchases still held in doubt (ledger and snapshot agree): dataset, array, index,
    key, external_id, fingerprint, batch_no."""
    plan_dir = Path(state) / "runs" / run_id / "plan"
    files = object_files(plan_dir)
    doubtful = ledger.held_outcomes(run_id)
    schema = {"batch_no": pl.Int64, "array": pl.Utf8, "index": pl.Int64}
    pending = pl.DataFrame(doubtful, schema=schema, orient="row")
    if not files or pending.height == 0:
        return pl.DataFrame(schema={"dataset": pl.Utf8, "array": pl.Utf8, "index": pl.Int64, "key": pl.Utf8,
                                    "external_id": pl.Utf8, "fingerprint": pl.UInt64, "batch_no": pl.Int64})
    # Only what the snapshot still holds in doubt: a later run may have settled or resent some already.
    still_held = Snapshot(Path(state)).scan("held").filter(pl.col("status") == HeldReason.IN_DOUBT).select("dataset", "key")
    return (
        pl.scan_parquet(files)
        .filter(pl.col("dataset").is_in(OCCURRENCES))
        .join(pending.lazy(), on=["batch_no", "array", "index"], how="semi")
        .join(still_held, on=["dataset", "key"], how="semi")
        .select("dataset", "array", "index", "key", "external_id", "fingerprint", "batch_no")
        .collect()
    )


def settle(state: Path, ledger: LedgerBase, run_id: str, decision: Decision, batches: Iterable[int] | None = None,
           *, decided_by: str = "person") -> SettleReport:
    """Settle the held occurrences of `batches` (default: every batch of the run holding some) as `decision`."""
    state = Path(state)
    run = _committed_run(ledger, run_id)
    held = held_objects(state, ledger, run.run_id)
    wanted = None if batches is None else sorted(set(batches))
    if wanted is not None:
        unknown = sorted(set(wanted) - set(ledger.batch_statuses(run.run_id)))
        if unknown:
            raise SettleError(f"run {run_id} has no batch {', '.join(map(str, unknown))}: the run's summary lists "
                              "its in-doubt batches")
        held = held.filter(pl.col("batch_no").is_in(wanted))
    report = SettleReport(run.run_id)
    if held.height == 0:
        return report
    require_intact(state, ledger)
    _record(ledger, run.run_id, held, decision, decided_by)
    _apply_to_snapshot(state, ledger, run.run_id, held, decision)
    report.settled = {int(b): decision for b in held["batch_no"].unique().sort()}
    report.occurrences = held.height
    return report


def check_in_doubt(state: Path, ledger: LedgerBase, run_id: str, exporter, *, now: datetime | None = None,
                   batches: Iterable[int] | None = None) -> SettleReport:
    """Read the affected users back from Braze and settle every batch the aggregates decide (see the module)."""
    state = Path(state)
    run = _committed_run(ledger, run_id)
    held = held_objects(state, ledger, run.run_id)
    if batches is not None:
        held = held.filter(pl.col("batch_no").is_in(sorted(set(batches))))
    report = SettleReport(run.run_id)
    if held.height == 0:
        return report
    occurrences = _occurrences(state / "runs" / run.run_id / "plan", held)
    users = exporter.export_users_sync(occurrences["external_id"].unique().to_list(),
                                       ["external_id", "custom_events", "purchases"])
    braze = _aggregates(users.users)
    now = now or datetime.now(UTC)
    verdicts = _verdicts(occurrences, braze, set(users.pending_ids), now)
    for batch_no, dataset, n in held.group_by("batch_no", "dataset").len().iter_rows():
        events, purchases = report.counts.get(int(batch_no), (0, 0))
        report.counts[int(batch_no)] = (events + n, purchases) if dataset == "events" else (events, purchases + n)
    for batch_no, decision in sorted(verdicts.items()):
        if decision is None:
            report.undecided.append(batch_no)
            continue
        part = settle(state, ledger, run.run_id, decision, [batch_no], decided_by="check")
        report.settled.update(part.settled)
        report.occurrences += part.occurrences
    return report


def auto_settle(state: Path, ledger: LedgerBase, exporter_factory, *, now: float | None = None) -> list[str]:
    """`check_in_doubt` for every committed run still holding occurrences in doubt (committed AUTO_AFTER_S ago
    or more); returns notes for the summary. `exporter_factory()` gives a BrazeExporter, or raises the
    configuration error that makes the check impossible (then it is skipped with a note, never failing the run)."""
    from connectors.braze.outcomes import BrazeConfigError

    now = time.time() if now is None else now
    runs = [run_id for run_id in ledger.runs_in_doubt(now - AUTO_AFTER_S) if held_objects(state, ledger, run_id).height]
    if not runs:
        return []
    notes = []
    try:
        exporter = exporter_factory()
        for run_id in runs:
            report = check_in_doubt(state, ledger, run_id, exporter)
            if report.settled:
                kinds = ", ".join(f"{sum(1 for d in report.settled.values() if d == k)} {k}"
                                  for k in ("delivered", "resend") if k in report.settled.values())
                notes.append(f"in doubt from run {run_id}: {len(report.settled)} batch(es) settled by reading Braze "
                             f"back ({kinds})")
            if report.undecided:
                notes.append(f"in doubt from run {run_id}: batch(es) {', '.join(map(str, report.undecided))} "
                             f"undecided: `braze-migrate settle {run_id} --delivered|--resend BATCH...`")
    except (BrazeConfigError, SettleError) as exc:
        notes.append(f"in-doubt check skipped ({str(exc).splitlines()[0]}); `braze-migrate settle` settles by hand")
    return notes


def _committed_run(ledger: LedgerBase, run_id: str):
    try:
        run = ledger.run(run_id)
    except KeyError:
        raise SettleError(f"no run {run_id} in the ledger: `braze-migrate status` lists the runs") from None
    if run.status != RunState.COMMITTED:
        raise SettleError(f"run {run_id} is not finished ({run.status}): run `braze-migrate {run.kind} {run.source}` "
                          "first, then settle what it left in doubt")
    return run


def _record(ledger: LedgerBase, run_id: str, held: pl.DataFrame, decision: Decision, decided_by: str) -> None:
    """The decision in the ledger: what `repair` replays. Delivered: the pending outcomes go (the batch
    acknowledged them); resend: the batch is no longer in doubt, so its pending occurrences are not held."""
    ledger.settle_batches(run_id, [(int(b), int(n)) for b, n in held.group_by("batch_no").len().rows()], decision,
                          decided_by)


def _apply_to_snapshot(state: Path, ledger: LedgerBase, run_id: str, held: pl.DataFrame, decision: Decision) -> None:
    """Delivered ids join the acknowledged ones; both decisions take them out of `held`."""
    snapshot = Snapshot(state, journal=journal_for(state, ledger, run_id))
    if decision == "delivered":
        for name in OCCURRENCES:
            new = held.filter(pl.col("dataset") == name).select("key", "fingerprint")
            if new.height:
                old = snapshot.scan(name).collect()
                snapshot.replace(name, pl.concat([old.join(new, on="key", how="anti"), new]).sort("key"))
    settled = held.select("dataset", "key")
    before = snapshot.scan("held").collect()
    after = before.join(settled, on=["dataset", "key"], how="anti")
    if after.height != before.height:
        snapshot.replace("held", after)


def _occurrences(plan_dir: Path, held: pl.DataFrame) -> pl.DataFrame:
    """external_id, name (event name or product id), time of every held occurrence, from the planned bodies."""
    bodies = scan_batches(plan_dir, ["batch_no", "body"]).filter(
        pl.col("batch_no").is_in(held["batch_no"].unique().to_list())).collect()
    if bodies.height < held["batch_no"].n_unique():
        raise SettleError(f"the request bodies of run {plan_dir.parent.name} are gone (plan retention): the check "
                          "cannot read what was sent; settle with --delivered or --resend")
    rows = []
    for batch_no, body in bodies.iter_rows():
        doc = orjson.loads(body)
        for array in OCCURRENCES:
            for index, obj in enumerate(doc.get(array) or ()):
                name = obj.get("name") if array == "events" else obj.get("product_id")
                rows.append((batch_no, array, index, name, obj.get("time")))
    sent = pl.DataFrame(rows, schema={"batch_no": pl.Int64, "array": pl.Utf8, "index": pl.Int64, "name": pl.Utf8,
                                      "time": pl.Utf8}, orient="row")
    return held.join(sent, on=["batch_no", "array", "index"], how="left").with_columns(
        at=pl.col("time").str.to_datetime(time_zone="UTC", strict=False))


def _aggregates(users: list[dict]) -> dict[tuple[str, str, str], tuple[datetime | None, int]]:
    """(external_id, array, name) → (last, count) from exported profiles."""
    out = {}
    for user in users:
        for array, field_name in (("events", "custom_events"), ("purchases", "purchases")):
            for agg in user.get(field_name) or ():
                last = agg.get("last")
                parsed = datetime.fromisoformat(last) if isinstance(last, str) else None
                out[(user.get("external_id"), array, agg.get("name"))] = (parsed, int(agg.get("count") or 0))
    return out


def _verdicts(occ: pl.DataFrame, braze: dict, unanswered: set[str], now: datetime) -> dict[int, Decision | None]:
    """Per batch: the decision every group of it agrees on, else None (see the module docstring)."""
    horizon = now.timestamp() - WINDOW_DAYS * 86_400
    groups = occ.group_by("batch_no", "external_id", "array", "name").agg(
        first=pl.col("at").min(), last=pl.col("at").max(), n=pl.len())
    per_batch: dict[int, set] = {}
    for r in groups.iter_rows(named=True):
        verdict: Decision | None
        if r["external_id"] in unanswered or r["first"] is None or r["first"].timestamp() < horizon:
            verdict = None
        else:
            last, count = braze.get((r["external_id"], r["array"], r["name"]), (None, 0))
            # No occurrence of that name in the window (or no such user), or only earlier ones: none landed.
            if last is None or last.timestamp() < r["first"].timestamp() - 0.5:
                verdict = "resend"
            elif abs(last.timestamp() - r["last"].timestamp()) < 1.0 and count >= r["n"]:
                verdict = "delivered"
            else:
                verdict = None
        per_batch.setdefault(r["batch_no"], set()).add(verdict)
    return {b: (next(iter(v)) if len(v) == 1 else None) for b, v in per_batch.items()}
