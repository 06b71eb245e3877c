"""Plan a run: read the source, normalize, diff against the snapshot, pack, and write the plan to disk.

The plan is the exact list of requests the run will send, written unit by unit before any of its batches
is sent; a resumed run walks the same plan: units already planned are kept, the remaining ones are planned
the same way (deterministically) from the spooled source.

Memory stays bounded by the partition size in every dimension. The source is first spooled to disk split
by a stable hash: users by `external_id` (the users snapshot is split the same way), events and purchases
by their id, tokens by their key, each occurrence dataset into partitions of at most `users_per_partition`
rows, with the acknowledged ids spooled by the same hash. Then each unit (one partition of one
dataset) is normalized, diffed against its own part of the snapshot, packed and written on its own, in a
fixed order (users, tokens, events, purchases). The packer carries the last, unfilled request of a unit into
the next, so requests are full across the whole plan (transforms/payloads.py).

`build_plan(..., on_unit=...)` reports each unit as soon as it is durable, so a caller can record and send
its batches while later units are still being planned (braze_migrate/run/pipeline.py).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import math
import multiprocessing
import os
import shutil
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import polars as pl
import pyarrow as pa

from braze_migrate.plan import seen
from braze_migrate.plan.checks import read_create_aliases, read_order_source, read_rules
from braze_migrate.plan.contract import read_contract
from braze_migrate.progress import ProgressEvent, ProgressSink
from connectors.sources import CATALOGS, Dataset, iter_batches, open_source, parquet_batches, reading
from connectors.state.snapshot import Snapshot, partition_of
from connectors.states import HeldReason, Outcome
from transforms import deltas, ecommerce, normalize, suspicious, type_contract
from transforms.csv_typing import infer_csv_types
from transforms.payloads import empty_tail, pack_unit

REJECT_COLUMNS = ["dataset", "key", "column", "value", "reason", "file", "row"]
OCCURRENCES = ("push_tokens", "events", "purchases", *ecommerce.DATASETS)
USERS_PER_PARTITION = 100_000
# The spool reads the source in batches of BATCH_ROWS rows and writes them out by partition whenever
# SPOOL_ROWS rows (or SPOOL_BYTES) are held, whatever the size of one file or one Parquet row group.
BATCH_ROWS = 65_536
SPOOL_ROWS = 262_144
SPOOL_BYTES = 96 << 20
LAYOUT_VERSION = 2
# One unit holds at most one partition, so it is collected in memory: for frames of this size Polars'
# in-memory engine is 1.2-2x faster than the streaming one, whose start-up dominates small units
# (docs/performance.md). Spooling the whole export stays streaming.
UNIT_ENGINE = "in-memory"
# Users partitions planned together when the memo leaves few rows to plan in each (Polars' cost per query is
# paid per group); the rows of a group stay within one partition's size.
GROUP_PARTS = 8

OBJECT_SCHEMA = {
    "dataset": pl.Utf8, "array": pl.Utf8, "key": pl.Utf8, "external_id": pl.Utf8, "object": pl.Utf8,
    "fingerprint": pl.UInt64, "data_points": pl.Int64, "_file": pl.Utf8, "_row": pl.Int64,
}
KEPT_SCHEMA = {"dataset": pl.Utf8, "key": pl.Utf8, "bucket": pl.Utf8, "reason": pl.Utf8, "_file": pl.Utf8,
               "_row": pl.Int64}
REJECT_SCHEMA = {"dataset": pl.Utf8, "key": pl.Utf8, "column": pl.Utf8, "value": pl.Utf8, "reason": pl.Utf8,
                 "file": pl.Utf8, "row": pl.Int64}
LEDGER_COLUMNS = ["batch_no", "n_attributes", "n_events", "n_purchases"]

UnitCallback = Callable[[int, pl.DataFrame], None]

UNCHANGED = Outcome.UNCHANGED.value  # the plan's count of rows found unchanged


class UnitsRunner(Protocol):
    """Runs `plan_unit_to_file(u, *args)` elsewhere (another process or machine, sharing the state folder):
    `submit` returns a future whose `result()` is its (path, record); `width` is how many units to keep
    submitted ahead of the packer."""

    width: int

    def submit(self, u: int, *args) -> Any: ...


@dataclass(frozen=True)
class PlanInfo:
    """Where a plan lives and its headline numbers."""

    directory: Path
    batches: int
    objects: int
    data_points: int
    stats: dict


def build_plan(source: str, snapshot: Snapshot, plan_dir: Path, *, batch_size: int, batch_mode: str,
               resend_in_doubt: bool, users_per_partition: int = USERS_PER_PARTITION,
               mapping: str | None = None, on_unit: UnitCallback | None = None,
               resume: bool = False, on_progress: ProgressSink | None = None,
               stop: Callable[[], bool] | None = None, units_runner: UnitsRunner | None = None) -> PlanInfo | None:
    """Write the plan into `plan_dir`: `batches/` and `objects/` (one file per unit), `users_next/` (one file
    per users partition), `kept.parquet` (rows not sent and why, except unchanged ones, which are counted),
    `rejects.parquet`, `stats.json` and, last, `complete`.

    `on_unit(unit, batches)` is called once a unit's files are durable, with the batches it closed
    (LEDGER_COLUMNS). With `resume`, the units of an interrupted plan of the same source are kept (and
    reported again, in order) and only the rest are planned. `on_progress` gets `reading` events (rows
    spooled) and `planning` events (units planned). `stop()` is asked before each unit: once it is true,
    planning ends there (None is returned) and a later call with `resume` goes on from that unit.
    `units_runner`: where units are normalized and diffed ahead of the packer (the parallel flows: Prefect tasks
    on Dask, so several machines plan one run); by default this process, or `plan_workers()` processes.
    """
    emit = on_progress or _no_progress
    layout = read_layout(plan_dir) if resume else None
    if layout is None:
        for sub in ("batches", "objects", "users_next", seen.NEXT, "units", "kept", "rejects", "work"):
            shutil.rmtree(plan_dir / sub, ignore_errors=True)
        for name in ("stats.json", "complete"):
            (plan_dir / name).unlink(missing_ok=True)
        layout = _spool(source, snapshot, plan_dir, users_per_partition=users_per_partition, mapping=mapping,
                        emit=emit)
    for sub in ("batches", "objects", "users_next", "units", "kept", "rejects"):
        (plan_dir / sub).mkdir(parents=True, exist_ok=True)

    units = layout["units"]
    held = snapshot.scan("held")
    if resend_in_doubt:
        held = held.filter(pl.col("status") != HeldReason.IN_DOUBT)
    csv_types = _csv_types(plan_dir, layout)
    emit(ProgressEvent("planning", 0, len(units), "units"))
    ahead = _UnitsAhead(plan_workers(), plan_dir, snapshot, held, csv_types, layout, units_runner)
    try:
        return _plan_units(plan_dir, source, mapping, layout, batch_size, batch_mode, ahead, on_unit, stop, emit)
    finally:
        ahead.close()


def _plan_units(plan_dir: Path, source: str, mapping: str | None, layout: dict, batch_size: int, batch_mode: str,
                ahead: _UnitsAhead, on_unit: UnitCallback | None, stop: Callable[[], bool] | None,
                emit: ProgressSink) -> PlanInfo | None:
    """Walk the units in order: keep (and report again) those already written, pack and write the others."""
    units = layout["units"]
    tail, next_batch = empty_tail(), 0
    for u, unit in enumerate(units):
        marker = plan_dir / "units" / f"unit-{u:05d}.json"
        if marker.exists():
            done = json.loads(marker.read_text())
            next_batch = done["next_batch"]
            carry = plan_dir / "units" / f"carry-{u:05d}.parquet"
            tail = pl.read_parquet(carry) if carry.exists() else empty_tail()
            if on_unit is not None:
                on_unit(u, _unit_batches(plan_dir, u))
            emit(ProgressEvent("planning", u + 1, len(units), "units", detail="resumed"))
            continue
        if stop is not None and stop():
            _finish(plan_dir, source, mapping, layout, batch_size, batch_mode, complete=False)
            return None
        final = u == len(units) - 1
        send, record = ahead.get(u)
        packed = pack_unit(send, batch_size=batch_size, mode=batch_mode, tail=tail, next_batch=next_batch,
                           final=final)
        if packed.batches.height:
            next_batch = int(packed.batches["batch_no"].max()) + 1
            # Renamed into place: a sender of a pipelined load scans batches/*.parquet while units are written.
            _atomic_parquet(packed.batches.with_columns(partition=pl.lit(u, pl.Int32)),
                            plan_dir / "batches" / f"unit-{u:05d}.parquet", "lz4")
        if packed.placed.height:
            _atomic_parquet(packed.placed, plan_dir / "objects" / f"unit-{u:05d}.parquet", "zstd")
        tail = packed.tail
        if tail.height:
            tail.write_parquet(plan_dir / "units" / f"carry-{u:05d}.parquet")
        record.update(next_batch=next_batch, objects=packed.placed.height,
                      data_points=int(packed.placed["data_points"].sum() or 0))
        _atomic_text(marker, json.dumps(record))
        if on_unit is not None:
            on_unit(u, packed.batches.select(LEDGER_COLUMNS))
        emit(ProgressEvent("planning", u + 1, len(units), "units",
                           detail=f"{unit['dataset']} {unit['part'] + 1}/{unit['parts']}, {next_batch:,} batches"))
    emit(ProgressEvent("planning", len(units), len(units), "units", finished=True, detail=f"{next_batch:,} batches"))
    return _finish(plan_dir, source, mapping, layout, batch_size, batch_mode)


def _no_progress(event: ProgressEvent) -> None:
    """The sink when nobody watches."""


def plan_workers() -> int:
    """Processes that normalize and diff units ahead of the packer (`BRAZE_MIGRATE_PLAN_WORKERS`, default 1:
    on 2 cores Polars already keeps both busy; see docs/performance.md)."""
    try:
        return max(1, int(os.environ.get("BRAZE_MIGRATE_PLAN_WORKERS", "1")))
    except ValueError:
        return 1


class _UnitsAhead:
    """The objects to send of each unit, in order. With several workers, the next units are normalized and
    diffed in child processes (spawned: Polars must not be forked) while this one packs; packing stays here
    and in order, because each unit starts from the previous unit's open batch."""

    def __init__(self, workers: int, plan_dir: Path, snapshot: Snapshot, held: pl.LazyFrame, csv_types,
                 layout: dict, runner: UnitsRunner | None = None) -> None:
        self.args = (plan_dir, snapshot, held, csv_types, layout)
        self.workers = runner.width if runner is not None else workers
        self.runner = runner
        self.futures: dict = {}
        self.cache: dict[int, tuple[pl.LazyFrame, dict]] = {}  # users units planned with an earlier one
        self.pending: _UsersPart | None = None  # the partition that did not fit in the last group
        self.pool = None
        if runner is None and workers > 1:
            # One Polars thread per child: the children are the parallelism.
            env = os.environ.get("POLARS_MAX_THREADS")
            os.environ["POLARS_MAX_THREADS"] = "1"
            try:
                self.pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
            finally:
                if env is None:
                    os.environ.pop("POLARS_MAX_THREADS", None)
                else:
                    os.environ["POLARS_MAX_THREADS"] = env

    def get(self, u: int) -> tuple[pl.LazyFrame, dict]:
        plan_dir, snapshot, held, csv_types, layout = self.args
        if self.pool is None and self.runner is None:
            if u in self.cache:
                return self.cache.pop(u)
            if layout["units"][u]["dataset"] == "users":
                return self._users_group(u)
            return _plan_unit(plan_dir, layout["units"][u], u, snapshot, held, csv_types, layout)
        for v in range(u, min(u + self.workers + 1, len(layout["units"]))):
            if v not in self.futures and not (plan_dir / "units" / f"unit-{v:05d}.json").exists():
                self.futures[v] = (self.runner.submit(v, *self.args) if self.runner is not None
                                   else self.pool.submit(plan_unit_to_file, v, *self.args))
        path, record = self.futures.pop(u).result()
        send = pl.read_parquet(path).lazy()
        path.unlink()
        return send, record

    def _users_group(self, u: int) -> tuple[pl.LazyFrame, dict]:
        """Plan users unit u with the next users units whose rows to plan (those the memo does not skip) fit
        in one partition's size, at most GROUP_PARTS of them; keep the others' results for their turn."""
        plan_dir, snapshot, held, csv_types, layout = self.args
        units = layout["units"]
        cap = layout.get("users_per_partition", USERS_PER_PARTITION)

        def split(v: int) -> _UsersPart:
            if self.pending is not None and self.pending.u == v:
                part, self.pending = self.pending, None
                return part
            return _split_users(plan_dir, v, units[v], snapshot, held, csv_types, layout)

        members = [split(u)]
        rows = members[0].rows_to_plan
        v = u + 1
        while (v < len(units) and units[v]["dataset"] == "users" and len(members) < GROUP_PARTS
               and not (plan_dir / "units" / f"unit-{v:05d}.json").exists()):
            part = split(v)
            if rows + part.rows_to_plan > cap:
                self.pending = part
                break
            members.append(part)
            rows += part.rows_to_plan
            v += 1
        self.cache.update(_plan_users(plan_dir, members, held, csv_types, layout))
        return self.cache.pop(u)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


def plan_unit_to_file(u: int, plan_dir: Path, snapshot: Snapshot, held: pl.LazyFrame, csv_types,
                      layout: dict) -> tuple[Path, dict]:
    """`_plan_unit` in another process (a child, or a Dask worker): the objects to send go to a file for the
    packer; the record names the process that planned the unit."""
    send, record = _plan_unit(plan_dir, layout["units"][u], u, snapshot, held, csv_types, layout)
    record["pid"] = os.getpid()
    path = plan_dir / "work" / "send" / f"unit-{u:05d}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    send.collect().write_parquet(path)
    return path, record


def read_layout(plan_dir: Path) -> dict | None:
    """The layout of a plan whose source was spooled completely, or None."""
    path = plan_dir / "layout.json"
    if not path.exists():
        return None
    layout = json.loads(path.read_text())
    return layout if layout.get("version") == LAYOUT_VERSION else None


def plan_complete(plan_dir: Path) -> bool:
    """Every unit of the plan is written (`complete` is the plan's last file)."""
    return (plan_dir / "complete").exists()


def _spool(source: str, snapshot: Snapshot, plan_dir: Path, *, users_per_partition: int,
           mapping: str | None, emit: ProgressSink) -> dict:
    """Split the source (and the acknowledged ids of occurrences) into hash partitions under `work/`, and
    write `layout.json`: the units to plan, in order."""
    (plan_dir / "layout.json").unlink(missing_ok=True)
    work = plan_dir / "work"
    data = open_source(source, mapping=mapping, work_dir=work / "source")
    _check_schemas(data, read_order_source(plan_dir))
    data = {name: ds for name, ds in data.items() if not name.startswith(CATALOGS)}  # synced apart (catalogs.py)
    read = {name: _count_rows(ds) for name, ds in data.items()}
    rows_of = dict(read)  # rows per export dataset (`read` counts orders for the eCommerce ones)
    total_rows, spooled = sum(read.values()), 0
    emit(ProgressEvent("reading", 0, total_rows, "rows"))
    n_users = snapshot.partitions(default=max(1, math.ceil(read.get("users", 0) / users_per_partition)))
    # Occurrence partitions hold as many rows as users partitions: measured on 4M events, 400k rows per
    # partition peaked at 1.3 GB and 100k rows at 0.44 GB, in less time (docs/performance.md).
    per_occurrence_part = users_per_partition
    units: list[dict] = []
    files: dict[str, list[str]] = {}
    csv_exclude = None
    if "users" in data:
        users = data["users"]
        with reading(users):
            if users.format == "csv":
                csv_exclude = sorted(users.typed)
            _spool_batches(iter_batches(users, BATCH_ROWS), normalize.external_id_text(users.frame), n_users,
                           work / "users")
        files["users"] = list(users.files)
        units += [{"dataset": "users", "part": p, "parts": n_users} for p in range(n_users)]
        spooled += read["users"]
        emit(ProgressEvent("reading", spooled, total_rows, "rows", detail="users spooled"))
    occurrences = _occurrence_datasets(data, read_order_source(plan_dir) is not None)
    for name in ecommerce.DATASETS:  # not planned (purchase objects): not read either
        if name not in occurrences and name in read:
            total_rows -= read.pop(name)
    for name, ds in occurrences.items():
        if name in ecommerce.DATASETS:  # eCommerce: orders, not rows, are what is read, sent and counted
            read.pop(ds.name, None)
            with reading(ds):
                read[name] = _count_orders(ds, name)
        parts = max(1, math.ceil(read[name] / per_occurrence_part))
        with reading(ds):
            _spool_batches(iter_batches(ds, BATCH_ROWS), _occurrence_key(ds.frame, name), parts, work / name)
        acked = snapshot.scan(name)
        n_acked = int(acked.select(pl.len()).collect().item())
        if n_acked:
            _spool_batches(parquet_batches([str(snapshot.path(name))], BATCH_ROWS), pl.col("key"), parts,
                           work / f"acked-{name}")
        files[name] = list(ds.files)
        units += [{"dataset": name, "part": q, "parts": parts} for q in range(parts)]
        spooled += rows_of[ds.name]
        emit(ProgressEvent("reading", spooled, total_rows, "rows", detail=f"{name} spooled"))
    columns = {name: [c for c in ds.frame.collect_schema().names() if c not in ("_file", "_row")]
               for name, ds in data.items()}  # the export's columns, for the schema guard (guards.py)
    layout = {"version": LAYOUT_VERSION, "units": units, "read": read, "partitions": n_users, "files": files,
              "columns": columns,
              "csv_exclude": csv_exclude, "users_per_partition": users_per_partition}
    _atomic_text(plan_dir / "layout.json", json.dumps(layout))
    _release_memory()
    emit(ProgressEvent("reading", total_rows, total_rows, "rows", finished=True))
    return layout


def _occurrence_datasets(data: dict[str, Dataset], as_ecommerce: bool) -> dict[str, Dataset]:
    """The occurrence datasets of a source by the name they are planned under: with eCommerce events, the
    export's `purchases` are planned as `orders` (and `order_refunds`, `order_cancellations` are read); without,
    those two are not read."""
    out = {}
    for name in OCCURRENCES:
        if (name == "purchases" and as_ecommerce) or (name in ecommerce.DATASETS and not as_ecommerce):
            continue
        source = ecommerce.SOURCE_DATASET.get(name, name)
        if source in data:
            out[name] = data[source]
    return out


def _count_orders(ds: Dataset, name: str) -> int:
    """Orders of an eCommerce dataset: its distinct keys, plus each row without one (rejected alone)."""
    key = ecommerce.key_text(ds.frame, name)
    return int(ds.frame.select(key.drop_nulls().n_unique() + key.null_count()).collect().item())


def _release_memory() -> None:
    """Hand the memory freed by the spool back to the system: pyarrow's pool and the C heap keep it otherwise,
    where Polars cannot reuse it, so planning would start that much higher (measured: 0.1-0.15 GB)."""
    pa.default_memory_pool().release_unused()
    libc = ctypes.util.find_library("c")
    if libc is not None and sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(libc).malloc_trim(0)


def _check_schemas(data: dict[str, Dataset], order_source: str | None = None) -> None:
    """Build every dataset's normalization once, lazily, so a missing or unusable column stops the run here,
    before anything is spooled or sent, not in a later unit of a plan that is already loading."""
    if "users" in data:
        with reading(data["users"]):
            normalize.normalize_users(data["users"].frame, None, files=data["users"].files)
    for name, ds in _occurrence_datasets(data, order_source is not None).items():
        with reading(ds):
            try:
                _normalize(name, ds.frame, ds.files, order_source)
            except normalize.NormalizeError as exc:
                if name == "purchases" and "order_id" in ds.frame.collect_schema():
                    raise normalize.NormalizeError(f"{exc} (rows with an order_id are lines of orders: send them "
                                                   "as eCommerce events with --purchases-as ecommerce)") from None
                raise


def _spool_batches(batches: Iterable[pl.DataFrame], key: pl.Expr, parts: int, target: Path) -> None:
    """Write `batches` into `target/slice-i/_part=p/part.parquet` by `partition_of(key)`, a slice each time
    SPOOL_ROWS rows (or SPOOL_BYTES) are held, so memory holds about that much whatever the size of one file of
    the source. Rows keep their order within a partition (slices are read back in order)."""
    shutil.rmtree(target, ignore_errors=True)
    held: list[pl.DataFrame] = []
    rows = size = slices = 0

    def flush() -> None:
        chunk = pl.concat(held, how="vertical", rechunk=False).with_columns(_part=partition_of(key, parts))
        for (p,), piece in chunk.partition_by("_part", as_dict=True, include_key=False).items():
            folder = target / f"slice-{slices:05d}" / f"_part={p}"
            folder.mkdir(parents=True, exist_ok=True)
            # lz4: work files, dropped with the plan: fast beats small (0.64 vs 0.8 s per 1M users)
            piece.write_parquet(folder / "part.parquet", compression="lz4")
        held.clear()

    for batch in batches:
        held.append(batch)
        rows, size = rows + batch.height, size + batch.estimated_size()
        if rows >= SPOOL_ROWS or size >= SPOOL_BYTES:
            flush()
            rows, size, slices = 0, 0, slices + 1
    if held:
        flush()


def _occurrence_key(frame: pl.LazyFrame, name: str) -> pl.Expr:
    """The key an occurrence row is deduplicated and acknowledged by, as normalization computes it: the event
    or purchase id, or `app_id:hash(token)` for a token. Rows of one key always share a partition."""
    schema = frame.collect_schema()

    def text(column: str) -> pl.Expr:
        return normalize._as_text(column, schema[column]) if column in schema else pl.lit(None, pl.String)

    if name == "push_tokens":
        return pl.concat_str([text("app_id"), pl.lit(":"), text("token").nchash.xxh3_64().cast(pl.Utf8)])
    if name in ecommerce.DATASETS:
        return ecommerce.key_text(frame, name)
    return text("purchase_id" if name == "purchases" else "event_id")


def _spooled(plan_dir: Path, name: str, part: int) -> list[Path]:
    return sorted((plan_dir / "work" / name).glob(f"slice-*/_part={part}/*.parquet"))


def _plan_unit(plan_dir: Path, unit: dict, u: int, snapshot: Snapshot, held: pl.LazyFrame, csv_types,
               layout: dict) -> tuple[pl.LazyFrame, dict]:
    """Normalize and diff one unit; write its kept and rejected rows (and users' next snapshot rows). Returns
    the objects to send (lazy over collected data) and the unit's counts."""
    name, p, parts = unit["dataset"], unit["part"], unit["parts"]
    if name == "users":
        part = _split_users(plan_dir, u, unit, snapshot, held, csv_types, layout)
        return _plan_users(plan_dir, [part], held, csv_types, layout)[u]
    files = _spooled(plan_dir, name, p)
    record = {"dataset": name, "part": p, UNCHANGED: 0, "full_dp": 0, "full_objects": 0}
    if not files:
        return pl.LazyFrame(schema=OBJECT_SCHEMA), record
    frame = pl.scan_parquet(files)
    # user_deletes rows (users deleted on behalf of the export, keyed by external_id) apply to every dataset.
    held_here = held.filter(((pl.col("dataset") == name) & (partition_of(pl.col("key"), parts) == p))
                            | (pl.col("dataset") == "user_deletes"))
    norm = _normalize(name, frame, layout["files"].get(name, []), read_order_source(plan_dir),
                      create_aliases=read_create_aliases(plan_dir))
    norm = suspicious.check(name, frame, norm, read_rules(plan_dir))  # held or flagged before anything is sent
    # Normalize once: the diff's several outputs would each run it again from a lazy plan.
    good, rej = pl.collect_all([norm.good, norm.rejects.select(REJECT_COLUMNS).cast(REJECT_SCHEMA)],
                               engine=UNIT_ENGINE)
    acked_files = _spooled(plan_dir, f"acked-{name}", p)
    acked = pl.scan_parquet(acked_files) if acked_files else snapshot.scan(name).head(0)
    if name == "push_tokens":
        d = deltas.diff_push_tokens(good.lazy(), acked, held_here)
        cost = pl.LazyFrame({"dp": [0], "objects": [0]}, schema={"dp": pl.Int64, "objects": pl.Int64})
    else:
        d = deltas.diff_occurrences(good.lazy(), acked, held_here, dataset=name, key=good.columns[0])
        cost = deltas.full_resend_cost(None, [good.lazy()])
    send, kept, n_unchanged, c = pl.collect_all([
        d.send.select(deltas.OBJECT_COLUMNS).cast(OBJECT_SCHEMA),
        d.kept.filter(pl.col("bucket") != Outcome.UNCHANGED).select(deltas.KEPT_COLUMNS).cast(KEPT_SCHEMA),
        d.kept.filter(pl.col("bucket") == Outcome.UNCHANGED).select(pl.len()),
        cost,
    ], engine=UNIT_ENGINE)
    record.update(unchanged=int(n_unchanged.item()), full_dp=int(c["dp"][0] or 0),
                  full_objects=int(c["objects"][0] or 0))
    _write_unit_rows(plan_dir, u, kept, _sorted_rejects(rej))
    return send.lazy(), record


@dataclass
class _UsersPart:
    """One users partition read and split by the memo of unchanged users (braze_migrate/plan/seen.py)."""

    u: int
    part: int
    parts: int
    frame: pl.LazyFrame | None  # the spooled rows (None: no user of the export falls in this partition)
    split: seen.Split | None
    made_of: dict | None
    contract: dict

    @property
    def rows_to_plan(self) -> int:
        return self.split.rest.height if self.split is not None else 0


def _split_users(plan_dir: Path, u: int, unit: dict, snapshot: Snapshot, held: pl.LazyFrame, csv_types,
                 layout: dict) -> _UsersPart:
    p, parts = unit["part"], unit["parts"]
    files = _spooled(plan_dir, "users", p)
    contract = read_contract(snapshot)
    if not files:
        return _UsersPart(u, p, parts, None, None, None, contract)
    frame = pl.scan_parquet(files)
    made_of = seen.ingredients(frame.collect_schema(), csv_types=csv_types, rules=read_rules(plan_dir))
    # Users whose export row and snapshot row both match the memo are unchanged: not normalized again.
    split = seen.split_known(frame, p, seen.plan_salt(made_of, contract), snapshot, _held_users(held, [p], parts))
    return _UsersPart(u, p, parts, frame, split, made_of, contract)


def _held_users(held: pl.LazyFrame, partitions: list[int], parts: int) -> pl.LazyFrame:
    """Held rows of these users partitions, and every user deleted on behalf of `user_deletes`."""
    return held.filter(((pl.col("dataset") == "users") & partition_of(pl.col("key"), parts).is_in(partitions))
                       | (pl.col("dataset") == "user_deletes"))


def _plan_users(plan_dir: Path, members: list[_UsersPart], held: pl.LazyFrame, csv_types, layout: dict
                ) -> dict[int, tuple[pl.LazyFrame, dict]]:
    """Normalize and diff the rows to plan of several users partitions at once (Polars' cost per query is
    paid once, not per partition), then write each partition's files and return each unit's objects and
    counts. Every step is per user, so the result is the same whatever the grouping (tests/test_seen.py)."""
    out = {m.u: (pl.LazyFrame(schema=OBJECT_SCHEMA),
                 {"dataset": "users", "part": m.part, UNCHANGED: 0, "full_dp": 0, "full_objects": 0})
           for m in members}
    live = [m for m in members if m.frame is not None]
    if not live:
        return out
    parts, plan_parts = live[0].parts, [m.part for m in live]
    rules, contract = read_rules(plan_dir), live[0].contract
    rest = pl.concat([m.split.rest for m in live], how="vertical").lazy()
    source_files = layout["files"].get("users", [])
    norm = normalize.normalize_users(rest, csv_types, files=source_files, column_rejects=False)
    # Collected before the next two steps: each builds two outputs on `good`, and Polars would normalize again
    # for each (measured 1.6x slower on 100,000 users).
    norm = normalize.Normalized(*(f.lazy() for f in pl.collect_all(norm, engine=UNIT_ENGINE)))
    norm = type_contract.enforce(norm, contract)  # one bad cell never retypes a column
    norm = suspicious.check("users", rest, norm, rules)  # held or flagged before anything is sent
    good, rej = pl.collect_all([norm.good, norm.rejects.select(REJECT_COLUMNS).cast(REJECT_SCHEMA)],
                               engine=UNIT_ENGINE)
    before = pl.concat([m.split.snapshot for m in live], how="diagonal_relaxed")
    d = deltas.diff_users(good.lazy(), before.lazy(), _held_users(held, plan_parts, parts),
                          snapshot_empty=before.height == 0, eager=True,
                          create_aliases=read_create_aliases(plan_dir))
    p_of = partition_of(pl.col("key"), parts).alias("_p")
    send, kept, unchanged, points, full, nxt = pl.collect_all([
        d.send.select(deltas.OBJECT_COLUMNS).cast(OBJECT_SCHEMA).with_columns(p_of),
        d.kept.filter(pl.col("bucket") != Outcome.UNCHANGED).select(deltas.KEPT_COLUMNS).cast(KEPT_SCHEMA).with_columns(p_of),
        d.kept.filter(pl.col("bucket") == Outcome.UNCHANGED).select("key", p_of),
        # Per user: the memo keeps each user's cost of being sent whole (a skipped user clears nothing).
        good.lazy().select("external_id", "_file", "_row", deltas.user_points(good.schema).alias("data_points"),
                           partition_of(pl.col("external_id"), parts).alias("_p")),
        # The full resend's: that cost and the nulls tonight writes (transforms/deltas.py resend_points).
        deltas.resend_points(good.lazy(), d).with_columns(partition_of(pl.col("external_id"), parts).alias("_p")),
        d.next_rows.with_columns(partition_of(pl.col("external_id"), parts).alias("_p")),
    ], engine=UNIT_ENGINE)
    rej = rej.with_columns(p_of)
    keys = pl.concat([m.split.keys for m in live])
    hashes = pl.concat([m.split.snapshot_hashes for m in live])
    entries = seen.next_entries(good, rej, keys, hashes, send, unchanged, points).with_columns(
        partition_of(pl.col("external_id"), parts).alias("_p"))
    for m in live:
        mine = pl.col("_p") == m.part
        own_send = send.filter(mine).drop("_p")
        # A partition's snapshot keeps the columns it has: a column only other partitions hold is not added.
        wanted = [c for c in nxt.columns if c != "_p" and (c in good.columns or c in m.split.snapshot.columns)]
        own_next = nxt.filter(mine).select(wanted)
        own_next.write_parquet(plan_dir / "users_next" / f"part-{m.part:05d}.parquet", compression="zstd")
        own_entries, first_schema = entries.filter(mine).drop("_p"), None
        if m.split.snapshot_hashes.height == 0:  # a first load of this partition: its part will be `own_next`
            own_entries, first_schema = seen.with_first_rows(own_entries, own_next), seen.schema_of(own_next.schema)
        seen.write_next(plan_dir, m.part, m.made_of, own_entries, first_schema)
        own_full = full.filter(mine)
        skipped = m.split.skipped
        out[m.u] = (own_send.lazy(), {
            "dataset": "users", "part": m.part,
            UNCHANGED: skipped.height + unchanged.filter(mine).height,
            "full_dp": int(skipped["data_points"].sum() or 0) + int(own_full["data_points"].sum() or 0),
            "full_objects": skipped.height + own_full.height,
        })
        columns = normalize.users_column_rejects(m.frame, csv_types).collect(engine=UNIT_ENGINE)
        own_rej = pl.concat([rej.filter(mine).drop("_p"), columns.select(REJECT_COLUMNS).cast(REJECT_SCHEMA)])
        _write_unit_rows(plan_dir, m.u, kept.filter(mine).drop("_p"), _sorted_rejects(own_rej))
    return out


def _sorted_rejects(rej: pl.DataFrame) -> pl.DataFrame:
    return rej.sort(["file", "row", "column", "reason"], nulls_last=False, maintain_order=True)


def _write_unit_rows(plan_dir: Path, u: int, kept: pl.DataFrame, rej: pl.DataFrame) -> None:
    if kept.height:
        kept.write_parquet(plan_dir / "kept" / f"unit-{u:05d}.parquet")
    if rej.height:
        rej.write_parquet(plan_dir / "rejects" / f"unit-{u:05d}.parquet")


def _finish(plan_dir: Path, source: str, mapping: str | None, layout: dict, batch_size: int,
            batch_mode: str, *, complete: bool = True) -> PlanInfo:
    """Merge the units' kept and rejected rows and write stats.json; once `complete`, drop the spool and write
    `complete` (the plan's last file). A plan stopped early gets the figures of the units written so far."""
    records = [json.loads(m.read_text()) for m in sorted((plan_dir / "units").glob("unit-*.json"))]
    written = {f"unit-{u:05d}.parquet" for u in range(len(records))}  # units are written in order
    _merge(plan_dir / "kept", KEPT_SCHEMA, plan_dir / "kept.parquet", written)
    _merge(plan_dir / "rejects", REJECT_SCHEMA, plan_dir / "rejects.parquet", written)
    unchanged = {name: 0 for name in layout["read"]}
    for r in records:
        unchanged[r["dataset"]] = unchanged.get(r["dataset"], 0) + r[UNCHANGED]
    stats = {
        "source": source,
        "mapping": mapping,
        "read": layout["read"],
        "columns": layout.get("columns", {}),
        UNCHANGED: unchanged,
        "partitions": layout["partitions"],
        "units": len(layout["units"]),
        "units_planned": len(records),
        "full_resend": {"data_points": sum(r["full_dp"] for r in records),
                        "objects": sum(r["full_objects"] for r in records)},
        "batch_size": batch_size,
        "batch_mode": batch_mode,
    }
    batches = max((r["next_batch"] for r in records), default=0)
    _atomic_text(plan_dir / "stats.json", json.dumps(stats, indent=2))
    if complete:
        shutil.rmtree(plan_dir / "work", ignore_errors=True)
        _atomic_text(plan_dir / "complete", "")
    return PlanInfo(plan_dir, batches, sum(r["objects"] for r in records), sum(r["data_points"] for r in records),
                    stats)


def _merge(folder: Path, schema: dict, target: Path, done: set[str]) -> None:
    files = sorted(f for f in folder.glob("*.parquet") if f.name in done)
    if files:
        pl.scan_parquet(files).sink_parquet(target)
    else:
        pl.DataFrame(schema=schema).write_parquet(target)


def _unit_batches(plan_dir: Path, u: int) -> pl.DataFrame:
    path = plan_dir / "batches" / f"unit-{u:05d}.parquet"
    return pl.read_parquet(path, columns=LEDGER_COLUMNS) if path.exists() else pl.DataFrame(
        schema={"batch_no": pl.Int64, "n_attributes": pl.UInt32, "n_events": pl.UInt32, "n_purchases": pl.UInt32})


def _csv_types(plan_dir: Path, layout: dict) -> dict | None:
    """Types of a CSV users export, decided from all its values (as spooled: a resumed plan decides the same)."""
    if layout.get("csv_exclude") is None:
        return None
    files = sorted((plan_dir / "work" / "users").glob("slice-*/_part=*/*.parquet"))
    return infer_csv_types(pl.scan_parquet(files), exclude=layout["csv_exclude"]) if files else {}


def _atomic_parquet(frame: pl.DataFrame, path: Path, compression: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    frame.write_parquet(tmp, compression=compression)
    os.replace(tmp, path)


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def scan_batches(plan_dir: Path, columns: list[str] | None = None) -> pl.LazyFrame:
    """All planned batches (every unit), lazily."""
    files = sorted((plan_dir / "batches").glob("*.parquet"))
    if not files:
        return pl.LazyFrame(schema={"batch_no": pl.Int64, "body": pl.Utf8, "n_attributes": pl.UInt32,
                                    "n_events": pl.UInt32, "n_purchases": pl.UInt32, "data_points": pl.Int64,
                                    "partition": pl.Int32}).select(columns or pl.all())
    lf = pl.scan_parquet(files)
    return lf.select(columns) if columns else lf


def object_files(plan_dir: Path) -> list[Path]:
    return sorted((plan_dir / "objects").glob("*.parquet"))


def _normalize(name: str, frame: pl.LazyFrame, files, order_source: str | None = None, *,
               create_aliases: bool = False) -> normalize.Normalized:
    if name in ecommerce.DATASETS:
        return ecommerce.normalize_orders(frame, dataset=name, source=order_source or "warehouse", files=files)
    fn = {
        "purchases": normalize.normalize_purchases,
        "events": normalize.normalize_events,
        "push_tokens": normalize.normalize_push_tokens,
    }[name]
    return fn(frame, files=files, create_aliases=create_aliases)


def _count_rows(ds: Dataset) -> int:
    with reading(ds):
        return int(ds.frame.select(pl.len()).collect().item())


def normalized_datasets(source: str, *, work_dir: Path, mapping: str | None = None
                        ) -> dict[str, tuple[pl.LazyFrame, normalize.Normalized]]:
    """Scan and normalize every dataset of a source whole: (raw frame, normalized), lazy. For readers that
    look at a sample (verify); planning itself goes partition by partition."""
    out = {}
    for name, ds in open_source(source, mapping=mapping, work_dir=work_dir).items():
        if name == "users":
            csv_types = infer_csv_types(ds.frame, exclude=ds.typed) if ds.format == "csv" else None
            out[name] = (ds.frame, normalize.normalize_users(ds.frame, csv_types, files=ds.files))
        elif name in ("push_tokens", "events", "purchases"):  # user_deletes: deletes.py; orders: not verified
            out[name] = (ds.frame, _normalize(name, ds.frame, ds.files))
    return out
