"""Guard rails: the figures that tell a broken export from a normal night, checked before anything is sent.

A warehouse job that empties a column tonight would otherwise make the sync send `null` to every user who
had a value. So, from the plan and what Braze acknowledged:
- per users column, of the users that hold a value in the snapshot: the share the plan would unset, and the
  share it would change to another value (`users_next/part-*.parquet` holds exactly the values the snapshot
  takes once acknowledged, partition by partition like the snapshot's own parts);
- per dataset: the rows read tonight against the rows of the last committed run's export (`user_deletes`
  apart: the deletes guard judges it, braze_migrate/ops/deletes.py);
- per dataset, its columns against the last committed run's export (the schema guard): a column renamed by
  case or punctuation (`tier` → `Tier`) always holds, naming both; a column gone holds from `min_rows` rows on.
  The baseline is always an acknowledged (committed) run, never a held one.
A figure over its threshold holds the run: nothing is sent, the plan stays on disk, and the message names
each column or dataset, its share and the `--accept` value that lets the same plan go out.
Thresholds are options (`--guard-unset-share`, `BRAZE_MIGRATE_GUARD_UNSET_SHARE`, ...); a state with nothing
acknowledged yet has no figures, so a first backfill is never held.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import polars as pl
from pydantic import BaseModel

from connectors.states import BatchState, RunState

EXIT_HELD = 4
FIGURE_SCHEMA = {"column": pl.Utf8, "users": pl.Int64, "unset": pl.Int64, "changed": pl.Int64,
                 "unset_share": pl.Float64, "changed_share": pl.Float64}
THRESHOLD_FLAGS = {"unset": "--guard-unset-share", "changed": "--guard-changed-share", "rows": "--guard-rows-drop-share"}
NOT_ROW_JUDGED = ("user_deletes",)  # judged by the deletes guard, never by the rows guard
SCHEMA_PREFIX = "column:"  # `--accept column:users.tier` accepts a vanished or renamed column
ROWS_PREFIX = "rows:"  # `--accept rows:purchases` accepts a dataset's row count (never clashes with a column)


class GuardSettings(BaseModel):
    """The thresholds, from the options model (`--guard-*`, environment `BRAZE_MIGRATE_GUARD_*`).

    A normal night changes a few percent of a column; a broken job empties or rewrites most of it. Columns
    held by fewer than `min_users` users, and datasets smaller than `min_rows`, are too small to judge."""

    unset_share: float = 0.05
    changed_share: float = 0.5
    min_users: int = 100
    rows_drop_share: float = 0.2
    min_rows: int = 100

    @classmethod
    def of(cls, settings) -> GuardSettings:
        """The thresholds of a run's LoadSettings."""
        return cls(**{name: getattr(settings, f"guard_{name}") for name in cls.model_fields})


@dataclass(frozen=True)
class Finding:
    """One figure over its threshold: what it is about, its share, and the `--accept` value that accepts it."""

    accept: str
    kind: str  # unset | changed | rows | missing | renamed
    share: float
    count: int
    of: int
    threshold: float
    renamed_to: str | None = None  # renamed: tonight's column that looks like the vanished one

    def text(self) -> str:
        if self.kind in ("missing", "renamed"):
            dataset, _, column = self.accept.removeprefix(SCHEMA_PREFIX).partition(".")
            gone = f"{dataset}: column '{column}' of the last acknowledged export is missing tonight"
            if self.kind == "missing":
                return gone + " (its values would stop updating)"
            return (gone + f" and '{self.renamed_to}' is new: it looks renamed (case or punctuation), so "
                    f"'{self.renamed_to}' would be sent as a new attribute and '{column}' would stop updating")
        if self.kind == "rows":
            name = self.accept.removeprefix(ROWS_PREFIX)
            return (f"{name}: rows down {self.share:.1%} ({self.of:,} in the last acknowledged export, "
                    f"{self.of - self.count:,} tonight; limit {self.threshold:.0%})")
        verb = "unset" if self.kind == "unset" else "changed"
        return (f"{self.accept}: {self.share:.1%} of its {self.of:,} users would be {verb} "
                f"({self.count:,}; limit {self.threshold:.0%})")


@dataclass
class GuardReport:
    """All figures of a plan, the findings over a threshold, and which of them were accepted."""

    columns: list[dict] = field(default_factory=list)   # column, users, unset, changed, unset_share, changed_share
    datasets: list[dict] = field(default_factory=list)  # dataset, before, tonight, drop_share
    findings: list[Finding] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)

    @property
    def held(self) -> list[Finding]:
        """Findings not accepted: any one of them holds the run."""
        return [f for f in self.findings if f.accept not in self.accepted]

    def column_label(self, column: str) -> str:
        """A users column as the figures table names it: a column that looks renamed names tonight's name too,
        as its held line does (`tier → Tier (renamed?)`), since tonight's name has no figures of its own."""
        twin = next((f.renamed_to for f in self.findings
                     if f.kind == "renamed" and f.accept == f"{SCHEMA_PREFIX}users.{column}"), None)
        return f"{column} → {twin} (renamed?)" if twin else column

    def accept_value(self) -> str:
        return ",".join(dict.fromkeys([*self.accepted, *(f.accept for f in self.held)]))

    def message(self, command: str | None = None) -> str:
        """One message: every held figure, and the flag (or the command) that accepts them."""
        if not self.held:
            return "guards passed"
        accept = f"--accept {self.accept_value()}"
        how = f"`{command} {accept}`" if command else f"`{accept}`"
        flags = ", ".join(dict.fromkeys(THRESHOLD_FLAGS[f.kind] for f in self.held if f.kind in THRESHOLD_FLAGS))
        every = f"; for every night, raise {flags}" if flags else ""
        return ("held by the guards, nothing was sent: " + "; ".join(f.text() for f in self.held)
                + f". If tonight's export is right, accept it with {how} (the plan is kept and sent as is{every}); "
                "otherwise fix the export (or its mapping) and run again")

    @classmethod
    def from_dict(cls, data: dict) -> GuardReport:
        """The report as `to_dict` stored it (in a run summary)."""
        return cls(columns=list(data.get("columns", [])), datasets=list(data.get("datasets", [])),
                   findings=[Finding(**f) for f in data.get("findings", [])], accepted=list(data.get("accepted", [])))

    def to_dict(self) -> dict:
        return {"columns": self.columns, "datasets": self.datasets,
                "findings": [asdict(f) for f in self.findings], "accepted": list(self.accepted),
                "held": [f.accept for f in self.held]}


def parse_accept(value: str | Iterable[str] | None) -> list[str]:
    """`email,loyalty_tier` (or a list of such) → ["email", "loyalty_tier"]."""
    if value is None:
        return []
    parts = [value] if isinstance(value, str) else list(value)
    return [name.strip() for part in parts for name in part.split(",") if name.strip()]


def column_figures(plan_dir: Path, snapshot_users: Path) -> pl.DataFrame:
    """Per users column of the snapshot: users holding a value, and how many of them the plan would unset or
    change. One lazy query per partition (a partition's plan meets the snapshot part of the same number), so
    memory follows the partition, never the whole user base."""
    parts: list[pl.DataFrame] = []
    for snap_file in sorted(Path(snapshot_users).glob("part-*.parquet")):
        snap = pl.scan_parquet(snap_file)
        columns = [c for c in snap.collect_schema().names() if c != "external_id"]
        if not columns:
            continue
        held = snap.select(pl.col(c).is_not_null().sum().alias(c) for c in columns)
        next_file = Path(plan_dir) / "users_next" / snap_file.name
        if next_file.exists():
            nxt = pl.scan_parquet(next_file)
            planned = [c for c in nxt.collect_schema().names() if c in columns]
            old = snap.select("external_id", *(pl.col(c).alias(f"old:{c}") for c in planned))
            j = nxt.select("external_id", *planned).join(old, on="external_id", how="inner")
            moves = j.select(
                *((pl.col(f"old:{c}").is_not_null() & pl.col(c).is_null()).sum().alias(f"unset:{c}")
                  for c in planned),
                *((pl.col(f"old:{c}").is_not_null() & pl.col(c).is_not_null() & (pl.col(c) != pl.col(f"old:{c}")))
                  .sum().alias(f"changed:{c}") for c in planned),
            )
            counts, moved = pl.collect_all([held, moves])
        else:
            counts, moved = held.collect(), pl.DataFrame()
        parts.append(pl.concat([counts.rename({c: f"users:{c}" for c in columns}), moved], how="horizontal"))
    if not parts:
        return pl.DataFrame(schema=FIGURE_SCHEMA)
    long = (pl.concat(parts, how="diagonal_relaxed")
            .select(pl.all().cast(pl.Int64).fill_null(0).sum())
            .unpivot(variable_name="name", value_name="n")
            .with_columns(pl.col("name").str.splitn(":", 2).struct.rename_fields(["what", "column"]))
            .unnest("name"))
    wide = long.pivot(on="what", index="column", values="n")
    return (wide.lazy()
            .with_columns(pl.lit(0, pl.Int64).alias(c) for c in ("users", "unset", "changed") if c not in wide.columns)
            .select("column", *(pl.col(c).fill_null(0).cast(pl.Int64) for c in ("users", "unset", "changed")))
            .with_columns(
                unset_share=pl.when(pl.col("users") > 0).then(pl.col("unset") / pl.col("users")).otherwise(0.0),
                changed_share=pl.when(pl.col("users") > 0).then(pl.col("changed") / pl.col("users")).otherwise(0.0),
            )
            .sort("column")
            .collect())


def dataset_figures(tonight: dict[str, int], before: dict[str, int] | None) -> list[dict]:
    """Rows per dataset tonight against the last acknowledged export (a dataset missing tonight has 0).
    `user_deletes` is not judged here: a night lists as many erasures as it has, and deletes have their own
    guard (braze_migrate/ops/deletes.py: a count and a share of acknowledged users)."""
    if not before:
        return []
    out = []
    for name in sorted((set(before) | set(tonight)) - set(NOT_ROW_JUDGED)):
        b, t = int(before.get(name, 0)), int(tonight.get(name, 0))
        out.append({"dataset": name, "before": b, "tonight": t,
                    "drop_share": round((b - t) / b, 6) if b > 0 and t < b else 0.0})
    return out


def _shape(name: str) -> str:
    """A column name without case or punctuation: `Tier`, `tier_` and `TIER` have the same shape."""
    return "".join(ch for ch in name.casefold() if ch.isalnum())


def schema_findings(tonight: dict[str, list[str]], before: dict[str, list[str]] | None,
                    rows_before: dict[str, int] | None = None, min_rows: int = 0) -> list[Finding]:
    """Columns of the last acknowledged export missing tonight, each paired with a new column of the same
    shape when there is one (a rename by case or punctuation: always held, whatever the size). A column that
    only vanished is judged, like the rows, from `min_rows` rows in the last acknowledged export on. A dataset
    missing as a whole is the rows guard's; `user_deletes` has only ids."""
    out: list[Finding] = []
    for dataset, old_columns in sorted((before or {}).items()):
        if dataset not in tonight or dataset in NOT_ROW_JUDGED:
            continue
        judged = (rows_before or {}).get(dataset, 0) >= max(1, min_rows)
        now = tonight[dataset]
        new = [c for c in now if c not in old_columns]
        for column in old_columns:
            if column in now:
                continue
            twin = next((c for c in new if _shape(c) == _shape(column)), None)
            if twin is None and not judged:
                continue
            out.append(Finding(f"{SCHEMA_PREFIX}{dataset}.{column}", "renamed" if twin else "missing", 1.0, 0, 0,
                               0.0, renamed_to=twin))
    return out


def evaluate(columns: pl.DataFrame, datasets: list[dict], settings: GuardSettings,
             accepted: Iterable[str] = (), schema: list[Finding] = ()) -> GuardReport:
    """The findings over a threshold, in a stable order (columns by name, then datasets)."""
    s = settings
    findings: list[Finding] = []
    judged = columns.filter(pl.col("users") >= max(1, s.min_users))
    for row in judged.iter_rows(named=True):
        if row["unset_share"] > s.unset_share:
            findings.append(Finding(row["column"], "unset", row["unset_share"], row["unset"], row["users"],
                                    s.unset_share))
        if row["changed_share"] > s.changed_share:
            findings.append(Finding(row["column"], "changed", row["changed_share"], row["changed"], row["users"],
                                    s.changed_share))
    for d in datasets:
        if d["before"] >= max(1, s.min_rows) and d["drop_share"] > s.rows_drop_share:
            findings.append(Finding(ROWS_PREFIX + d["dataset"], "rows", d["drop_share"], d["before"] - d["tonight"],
                                    d["before"], s.rows_drop_share))
    findings += schema
    return GuardReport(
        columns=[{k: (round(v, 6) if isinstance(v, float) else v) for k, v in r.items()}
                 for r in columns.iter_rows(named=True)],
        datasets=datasets, findings=findings, accepted=list(dict.fromkeys(accepted)),
    )


def check_plan(plan_dir: Path, state: Path, baseline: dict[str, int] | None, settings: GuardSettings,
               accepted: Iterable[str] = (), baseline_columns: dict[str, list[str]] | None = None) -> GuardReport:
    """The guard report of a plan written under `plan_dir` against the state folder's snapshot."""
    stats = json.loads((Path(plan_dir) / "stats.json").read_text())
    columns = column_figures(plan_dir, Path(state) / "snapshot" / "users")
    schema = schema_findings(stats.get("columns", {}), baseline_columns, baseline, settings.min_rows)
    return evaluate(columns, dataset_figures(stats.get("read", {}), baseline), settings, accepted, schema)


@dataclass(frozen=True)
class Baseline:
    """The last acknowledged export: rows per dataset and, when its plan recorded them, its columns."""

    rows: dict[str, int]
    columns: dict[str, list[str]] | None


def baseline(runs: Iterable, state: Path, *, exclude: str | None = None) -> Baseline | None:
    """The export of the last committed run (newest first in `runs`): a held or abandoned run was never
    acknowledged, so it is never the baseline. Read from that run's plan (`stats.json`), else from its summary."""
    for run in runs:
        if run.status != RunState.COMMITTED or run.run_id == exclude:
            continue
        stats = Path(state) / "runs" / run.run_id / "plan" / "stats.json"
        if stats.exists():
            data = json.loads(stats.read_text())
            return Baseline({k: int(v) for k, v in data.get("read", {}).items()}, data.get("columns"))
        datasets = (run.summary or {}).get("datasets") or {}
        if datasets:
            return Baseline({k: int(v.get("read", 0)) for k, v in datasets.items()}, None)
    return None


def baseline_rows(runs: Iterable, state: Path, *, exclude: str | None = None) -> dict[str, int] | None:
    """Rows per dataset of the last committed run's export, or None before any."""
    found = baseline(runs, state, exclude=exclude)
    return found.rows if found else None


def render_text(report: GuardReport) -> str:
    """The figures as a short table, for `plan` and the run report."""
    lines = [f"  {'column':<24}{'users':>9}{'unset':>9}{'share':>8}{'changed':>9}{'share':>8}"]
    for c in report.columns:
        lines.append(f"  {report.column_label(c['column']):<24}{c['users']:>9,}{c['unset']:>9,}{c['unset_share']:>8.1%}"
                     f"{c['changed']:>9,}{c['changed_share']:>8.1%}")
    if report.datasets:
        lines.append(f"  {'dataset':<24}{'before':>9}{'tonight':>9}{'down':>8}")
        for d in report.datasets:
            lines.append(f"  {d['dataset']:<24}{d['before']:>9,}{d['tonight']:>9,}{d['drop_share']:>8.1%}")
    held = report.held
    lines.append("  guards: " + ("passed" if not held else "HOLD " + ", ".join(f.accept for f in held)))
    return "\n".join(lines)


def guard_run(state: Path, plan_dir: Path, run_id: str, ledger, settings: GuardSettings,
              accepted: Iterable[str] = ()) -> GuardReport | None:
    """The guard report of a run about to send (also written to `plan_dir/guards.json`), or None once any of
    its batches left: its figures were passed or accepted then, and a resumed load is never held halfway."""
    if any(status != BatchState.PLANNED for status in ledger.status_counts(run_id)):
        return None
    if not (Path(plan_dir) / "complete").exists():
        return None  # a first load, planned while it loads (braze_migrate/run/pipeline.py): no figures to compare
    before = baseline(ledger.runs(limit=100), state, exclude=run_id)
    report = check_plan(plan_dir, state, before.rows if before else None, settings, accepted,
                        before.columns if before else None)
    (Path(plan_dir) / "guards.json").write_text(json.dumps(report.to_dict(), indent=1))
    return report


def dry_run_report(state: Path, plan_dir: Path, settings) -> GuardReport:
    """The figures `braze-migrate plan` shows: the same as a run's, against the last committed run's rows when a
    ledger exists (a dry run never creates one)."""
    from connectors.state.ledgers import open_ledger

    url = settings.ledger_url.get_secret_value() if settings.ledger_url else None
    before = None
    if url or (Path(state) / "ledger.sqlite").exists():
        ledger = open_ledger(Path(state), url)
        try:
            before = baseline(ledger.runs(limit=100), state)
        finally:
            ledger.close()
    return check_plan(plan_dir, state, before.rows if before else None, GuardSettings.of(settings), settings.accept,
                      before.columns if before else None)
