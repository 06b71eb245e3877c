"""Catalog sync: each `catalogs/<name>` dataset of an export synced to the Braze catalog of that name, planned,
ledgered and committed like the track load, so a night sends only what changed.

- check: the catalog's fields and types are read from Braze (GET /catalogs) and compared with the export's
  columns; any difference stops the sync with one line naming the catalog and the fields, nothing sent.
- plan: items are normalized (transforms/catalogs.py), diffed against the snapshot of acknowledged items:
  creates (POST), edits of the changed fields (PATCH) and, only with `--catalog-deletes`, deletes of the items
  gone from the export (DELETE); packed 50 items per request into `runs/<run>/catalogs/<name>.parquet` and
  recorded in the ledger as `planned` (connectors/state/catalogs.py). Deletes over `catalog_delete_max_share`
  of a catalog's acknowledged items are held unless `--allow-mass-delete`.
- apply: write-ahead, like track batches: `sending` is committed before a request leaves, its outcome after
  Braze answered, under the item endpoints' shared limit (16,000 requests per minute).
- commit: the snapshot takes the values of the items Braze acknowledged; the requests become `committed`.
A killed sync is finished by the next run before it plans anything: its `planned` requests are sent, those
left `sending` (in doubt) are sent again (catalog writes are idempotent), acknowledged ones never.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import polars as pl

from braze_migrate.settings import ConfigError
from connectors.braze.catalogs import CatalogClient, ItemsResult
from connectors.sources import CATALOGS, catalog_names, open_source, reading
from connectors.state.catalogs import CatalogLedger, replace_acked, scan_acked
from connectors.states import RequestState
from transforms import catalogs as items
from transforms.csv_typing import apply_csv_types, infer_csv_types

PLAN_FOLDER = "catalogs"  # in the run's folder: <name>.parquet (requests) and <name>-items.parquet (values)


class CatalogMismatch(ConfigError):
    """The export's catalog fields differ from Braze's (or the catalog is missing): one line, nothing sent."""


@dataclass(frozen=True)
class CatalogSettings:
    """The item endpoints' `rate_limit`; `deletes`: items gone from the export are deleted; the guard holds
    deletes over `max_delete_share` of a catalog's acknowledged items (judged from `min_items` on) unless
    `allow_mass`."""

    rate_limit: str = "16000/60s"
    deletes: bool = False
    max_delete_share: float = 0.1
    min_items: int = 100
    allow_mass: bool = False
    max_attempts: int = 6
    max_retry_seconds: float = 300.0
    timeout_seconds: float = 30.0

    @classmethod
    def of(cls, settings) -> CatalogSettings:
        """From the run's LoadSettings (fields it does not have keep their defaults)."""
        names = {"rate_limit": "catalog_rate_limit", "deletes": "catalog_deletes",
                 "max_delete_share": "catalog_delete_max_share", "min_items": "guard_min_rows",
                 "allow_mass": "allow_mass_delete", "max_attempts": "max_attempts",
                 "max_retry_seconds": "max_retry_seconds", "timeout_seconds": "timeout_seconds"}
        return cls(**{k: getattr(settings, v) for k, v in names.items() if getattr(settings, v, None) is not None})


@dataclass
class CatalogReport:
    """What one catalog's sync did (counts and messages; never item values)."""

    name: str
    read: int = 0
    rejected: int = 0
    unchanged: int = 0
    created: int = 0
    updated: int = 0
    deleted: int = 0
    gone_kept: int = 0  # items gone from the export and kept in Braze (no --catalog-deletes, or held)
    pending: int = 0  # items of requests not acknowledged (sent again by the next run)
    batches: int = 0
    acknowledged_batches: int = 0
    refused_batches: int = 0  # answered 400: Braze refused the request whole
    requests: int = 0
    throttled: int = 0
    held: str | None = None
    rejected_rows: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        out = asdict(self)
        out.pop("rejected_rows")
        return out


@dataclass
class _Planned:
    report: CatalogReport
    requests: pl.DataFrame  # batch_no, method, n_items, body, ids


def read_catalogs(source: str, mapping: str | None, work_dir: Path) -> dict[str, pl.DataFrame]:
    """Every catalog of the source by name, collected (CSV typed from its values, like users)."""
    out: dict[str, pl.DataFrame] = {}
    if not catalog_names(source, mapping=mapping):
        return out  # the other datasets are not read again
    for name, ds in open_source(source, mapping=mapping, work_dir=work_dir).items():
        if not name.startswith(CATALOGS):
            continue
        with reading(ds):
            frame = ds.frame
            if ds.format == "csv":
                frame = apply_csv_types(frame, infer_csv_types(frame, exclude=(*ds.typed, items.ID)))
            out[name[len(CATALOGS):]] = frame.collect()
    return out


def check_fields(catalogs: dict[str, pl.DataFrame], braze: dict[str, list[dict]]) -> None:
    """Raise CatalogMismatch (one line) when any catalog's columns differ from its fields in Braze."""
    problems = [m for name, frame in catalogs.items() if (m := items.field_mismatch(name, frame.schema, braze.get(name)))]
    if problems:
        raise CatalogMismatch("; ".join(problems))


def plan_catalog(run_dir: Path, run_id: str, state: Path, name: str, frame: pl.DataFrame,
                 ledger: CatalogLedger | None, settings: CatalogSettings) -> _Planned:
    """Normalize, diff against the acknowledged items and pack one catalog; write its requests and the values
    the snapshot takes, and record the requests (`ledger=None`: a dry run records nothing)."""
    report = CatalogReport(name, read=frame.height)
    norm = items.normalize_items(frame.lazy(), name)
    good, rejects = pl.collect_all([norm.good, norm.rejects])
    report.rejected = rejects.height
    report.rejected_rows = rejects.to_dicts()
    acked = scan_acked(state, name)
    n_acked = acked.select(pl.len()).collect().item()
    gone = items.gone_count(good.lazy(), acked).collect().item()
    deletes = settings.deletes
    if deletes and gone and n_acked >= max(1, settings.min_items) and gone > settings.max_delete_share * n_acked \
            and not settings.allow_mass:
        deletes = False
        report.held = (f"catalog {name}: {gone} of {n_acked} acknowledged items are gone from the export, over the "
                       f"guard ({settings.max_delete_share:.0%}); check the export, then run again with "
                       "--allow-mass-delete to delete them")
    writes = items.diff_items(good.lazy(), acked, deletes=deletes)
    requests = items.pack(writes).collect()
    report.gone_kept = 0 if deletes else gone
    written = writes.filter(pl.col("method") != "DELETE").select(items.ID).collect()
    report.unchanged = good.height - written.height
    report.batches = requests.height
    folder = run_dir / PLAN_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    good.join(written, on=items.ID, how="semi").drop("_file", "_row", "fingerprint").write_parquet(
        folder / f"{name}-items.parquet")
    requests.write_parquet(folder / f"{name}.parquet")
    if ledger is not None:
        ledger.record_plan(run_id, name, [(b, m, n) for b, m, n in requests.select("batch_no", "method", "n_items").iter_rows()])
    return _Planned(report, requests)


def apply_catalog(run_dir: Path, run_id: str, name: str, ledger: CatalogLedger, client: CatalogClient) -> None:
    """Send every request of the plan not yet final (`planned`, or `sending`: in doubt, sent again)."""
    requests = pl.read_parquet(run_dir / PLAN_FOLDER / f"{name}.parquet")
    status = {b.batch_no: b.status for b in ledger.batches(run_id, name)}
    todo = [(b, m, body.encode()) for b, m, body in requests.select("batch_no", "method", "body").iter_rows()
            if status.get(b) in (RequestState.PLANNED, RequestState.SENDING)]

    def sending(batch_no: int) -> None:
        ledger.mark_sending(run_id, name, batch_no)

    def result(batch_no: int, r: ItemsResult) -> None:
        ledger.record_result(run_id, name, batch_no, r.status, requests=r.requests, throttled=r.throttled,
                             reason=r.reason)

    if todo:
        client.send_all(name, todo, sending, result)


def commit_catalog(run_dir: Path, run_id: str, state: Path, name: str, ledger: CatalogLedger) -> None:
    """The snapshot takes the items of every acknowledged, uncommitted request of the plan; they become committed."""
    done = [b for b in ledger.batches(run_id, name) if b.status == RequestState.ACKNOWLEDGED and not b.committed]
    if not done:
        return
    folder = run_dir / PLAN_FOLDER
    requests = pl.read_parquet(folder / f"{name}.parquet").filter(pl.col("batch_no").is_in([b.batch_no for b in done]))
    ids = requests.explode("ids").select("method", pl.col("ids").alias(items.ID))
    written = ids.filter(pl.col("method") != "DELETE").select(items.ID)
    touched = ids.select(items.ID)
    values = pl.read_parquet(folder / f"{name}-items.parquet").join(written, on=items.ID, how="semi")
    before = scan_acked(state, name).collect()
    after = pl.concat([before.join(touched, on=items.ID, how="anti"), values], how="diagonal_relaxed").sort(items.ID)
    replace_acked(state, name, after)
    ledger.mark_committed(run_id, name, [b.batch_no for b in done])


def finish_earlier(runs_dir: Path, state: Path, ledger: CatalogLedger, client: CatalogClient) -> None:
    """Send and commit what killed or stopped syncs left (their acknowledged requests are never sent again)."""
    for run_id, name in ledger.unfinished():
        run_dir = runs_dir / run_id
        if not (run_dir / PLAN_FOLDER / f"{name}.parquet").exists():
            continue
        apply_catalog(run_dir, run_id, name, ledger, client)
        commit_catalog(run_dir, run_id, state, name, ledger)


def sync_catalogs(run_id: str, runs_dir: Path, state: Path, source: str, mapping: str | None, ledger,
                  client: CatalogClient, settings: CatalogSettings) -> list[CatalogReport]:
    """check → plan → apply → commit for every catalog of the source, after finishing earlier syncs."""
    book = CatalogLedger(ledger)
    finish_earlier(runs_dir, state, book, client)
    run_dir = runs_dir / run_id
    catalogs = read_catalogs(source, mapping, run_dir / "plan" / "work" / "catalogs")
    if not catalogs:
        return []
    check_fields(catalogs, client.list_fields())
    reports = []
    for name, frame in catalogs.items():
        planned = plan_catalog(run_dir, run_id, state, name, frame, book, settings)
        apply_catalog(run_dir, run_id, name, book, client)
        commit_catalog(run_dir, run_id, state, name, book)
        reports.append(_outcome(planned, book.batches(run_id, name)))
    return reports


def _outcome(planned: _Planned, batches) -> CatalogReport:
    report = planned.report
    sent = {b.batch_no: b for b in batches}
    for batch_no, method, n in planned.requests.select("batch_no", "method", "n_items").iter_rows():
        b = sent.get(batch_no)
        if b is not None and b.status == RequestState.ACKNOWLEDGED:
            report.acknowledged_batches += 1
            if method == "POST":
                report.created += n
            elif method == "PATCH":
                report.updated += n
            else:
                report.deleted += n
        elif b is not None and b.status == RequestState.REJECTED:
            # Braze refused the request whole (its error ids are in the ledger); the export's rows it held count
            # as rejected; the next run plans them again.
            report.rejected += n if method != "DELETE" else 0
            report.refused_batches += 1
        else:
            report.pending += n
    report.requests = sum(b.requests for b in batches)
    report.throttled = sum(b.throttled for b in batches)
    return report


def preview(source: str, mapping: str | None, state: Path, work_dir: Path, settings: CatalogSettings) -> list[dict]:
    """What a run would send per catalog (`plan`): items to create, edit and delete, requests; nothing is sent
    and Braze is not asked. Catalog items are not data points (those are measured on user profiles)."""
    out = []
    for name, frame in read_catalogs(source, mapping, work_dir / "catalogs").items():
        planned = plan_catalog(work_dir, "", state, name, frame, None, settings)
        by = dict(planned.requests.group_by("method").agg(pl.col("n_items").sum()).iter_rows())
        out.append({**planned.report.to_dict(), "requests": planned.requests.height, "creates": by.get("POST", 0),
                    "edits": by.get("PATCH", 0), "deletes": by.get("DELETE", 0), "data_points": 0})
    return out

