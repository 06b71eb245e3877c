"""The state of catalog syncs: the ledger of catalog item requests (its table and every statement on it) and
the snapshot of acknowledged item values.

Ledger: one row per request (`catalog_batches`), written ahead like track batches: `planned` when the plan is
recorded, `sending` (committed) before the request leaves, then `acknowledged`, `rejected` (a 400: Braze
refused the whole request) or `pending` (no answer within the retry budget). `committed` marks an
acknowledged request whose items the snapshot holds. An acknowledged request is never sent again; one left
`sending` by a killed process is in doubt and sent again, which is harmless for catalog items (a create of an
existing id leaves it as it is, edits and deletes are idempotent).

Snapshot: `STATE/catalogs/<name>.parquet`, per catalog, the `id` and the JSON text of each field as Braze
acknowledged it: tonight's export is compared with it, so a night sends only what changed.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from connectors.state.ledger_base import LedgerBase
from connectors.states import FINAL_REQUESTS, RequestState

Status = RequestState
FINAL: tuple[Status, ...] = FINAL_REQUESTS


@dataclass(frozen=True)
class CatalogBatch:
    run_id: str
    catalog: str
    batch_no: int
    method: str
    status: Status
    n_items: int
    requests: int
    throttled: int
    reason: str | None
    committed: bool


class CatalogLedger:
    """Typed operations on `catalog_batches` over a run ledger (SQLite or PostgreSQL)."""

    def __init__(self, ledger: LedgerBase) -> None:
        self.ledger = ledger  # its table, `catalog_batches`, is in connectors/state/schema.py

    def record_plan(self, run_id: str, catalog: str, rows: list[tuple[int, str, int]]) -> None:
        """(batch_no, method, n_items) per request, all `planned` (again: idempotent)."""
        with self.ledger._transaction():
            for batch_no, method, n in rows:
                self.ledger._execute(
                    "INSERT INTO catalog_batches (run_id, catalog, batch_no, method, status, n_items) "
                    "VALUES (?,?,?,?,?,?) ON CONFLICT DO NOTHING",
                    (run_id, catalog, batch_no, method, RequestState.PLANNED.value, n))

    def mark_sending(self, run_id: str, catalog: str, batch_no: int) -> None:
        """Write-ahead: committed before the request leaves."""
        self.ledger._move("catalog_batches", RequestState.SENDING, "attempts=attempts+1, updated_at=?", (time.time(),),
                          "run_id=? AND catalog=? AND batch_no=?", (run_id, catalog, batch_no))

    def record_result(self, run_id: str, catalog: str, batch_no: int, status: Status, *, requests: int,
                      throttled: int, reason: str | None) -> None:
        self.ledger._move("catalog_batches", RequestState(status), "requests=requests+?, throttled=throttled+?, "
                          "reason=?, updated_at=?", (requests, throttled, reason, time.time()),
                          "run_id=? AND catalog=? AND batch_no=?", (run_id, catalog, batch_no))

    def mark_committed(self, run_id: str, catalog: str, batch_nos: list[int]) -> None:
        with self.ledger._transaction():
            for batch_no in batch_nos:
                self.ledger._execute("UPDATE catalog_batches SET committed=1 WHERE run_id=? AND catalog=? AND "
                                     "batch_no=?", (run_id, catalog, batch_no))

    def batches(self, run_id: str | None = None, catalog: str | None = None) -> list[CatalogBatch]:
        """The requests of a run (and catalog), or of every run, oldest run first."""
        where, params = [], []
        for column, value in (("run_id", run_id), ("catalog", catalog)):
            if value is not None:
                where.append(f"{column}=?")
                params.append(value)
        sql = ("SELECT run_id, catalog, batch_no, method, status, n_items, requests, throttled, reason, committed "
               "FROM catalog_batches" + (" WHERE " + " AND ".join(where) if where else "")
               + " ORDER BY run_id, catalog, batch_no")
        return [CatalogBatch(*r[:4], RequestState(r[4]), *r[5:9], bool(r[9])) for r in self.ledger._execute(sql, tuple(params)).fetchall()]

    def unfinished(self) -> list[tuple[str, str]]:
        """(run_id, catalog) of every plan with a request not final, or acknowledged and not committed."""
        rows = self.ledger._execute(
            "SELECT DISTINCT run_id, catalog FROM catalog_batches WHERE status IN ('planned','sending') "
            "OR (status='acknowledged' AND committed=0) ORDER BY run_id, catalog").fetchall()
        return [(r[0], r[1]) for r in rows]


def snapshot_path(state: Path, catalog: str) -> Path:
    return Path(state) / "catalogs" / f"{catalog}.parquet"


def scan_acked(state: Path, catalog: str) -> pl.LazyFrame:
    """The acknowledged items of a catalog (`id` + one JSON-text column per field); empty before the first."""
    path = snapshot_path(state, catalog)
    return pl.scan_parquet(path) if path.exists() else pl.LazyFrame(schema={"id": pl.Utf8})


def replace_acked(state: Path, catalog: str, frame: pl.DataFrame) -> None:
    """Write the catalog's snapshot aside, fsync, then rename over the old one: a crash leaves one or the other."""
    path = snapshot_path(state, catalog)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".parquet.tmp")
    frame.write_parquet(tmp, compression="zstd")
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
