"""Apply a plan: claim its batches from the ledger and send them through the Braze client.

Any number of workers (processes, machines, Dask tasks) may apply one run at once. Each claims small
blocks of batches, marks a batch `sending` only while it still owns the claim, and draws its permits from
a rate budget shared through the ledger's database, so together they stay within the limit and never send
a batch twice. Acknowledged batches are never claimed; batches left `sending` by a dead worker come back in
doubt. A first SIGINT/SIGTERM lets in-flight requests finish and starts no new batch (the client handles
it); the claims not yet sent go back to `planned`.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, fields
from pathlib import Path

import polars as pl

from braze_migrate.load.preflight import check_credentials
from braze_migrate.plan.planner import scan_batches
from braze_migrate.settings import LoadSettings
from connectors.braze.client import BatchRequest, BrazeLoader
from connectors.braze.outcomes import LoadStats
from connectors.braze.ratelimit import LeasedBudget, RateLimiter, budget_key, parse_rate
from connectors.state.ledger import LEASE_SECONDS, UNFINISHED_BATCHES, LedgerBase
from connectors.states import BatchState

log = logging.getLogger(__name__)

CHUNK = 1_000  # batches read from the plan at a time (and one chunk ahead): bounded memory for any plan
HEARTBEAT_SECONDS = LEASE_SECONDS / 6
POLL_SECONDS = 0.5  # while other workers finish their batches
PLANNING_POLL_SECONDS = 0.05  # while the planner writes the next unit: its batches are sent without delay
# Connections writing a remote ledger: enough for ~1,000 batches/s at ~2 ms per round trip (2 writes a batch).
WRITE_CONNECTIONS = 4


@dataclass(slots=True)
class WorkerStats(LoadStats):
    """One worker's LoadStats, with its id and what the shared rate budget cost it."""

    worker_id: str = ""
    leases: int = 0
    lease_seconds: float = 0.0
    stopped: bool = False  # by a signal, with batches left to claim


class ClaimLost(Exception):
    """This worker's claim on a batch was taken over (its lease ran out): it stops rather than risk a
    second send. Its other batches are reclaimed by the remaining workers."""

    def __init__(self, batch_no: int) -> None:
        super().__init__(f"batch {batch_no}: the claim was taken over by another worker; stopping this worker")
        self.batch_no = batch_no


class PlanBodies:
    """Request bodies of claimed batches, read from the plan a chunk at a time (claims come in order). The next
    chunk is read ahead in a thread (Polars releases the GIL), so the event loop never waits for a read while
    sending at full speed. While the plan is still being written, a batch not found yet is looked for again in
    the files written since."""

    def __init__(self, plan_dir: Path) -> None:
        self._plan_dir = plan_dir
        self._scan = scan_batches(plan_dir, ["batch_no", "body"])
        self._cache: dict[int, str] = {}
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="plan-bodies")
        self._ahead: Future | None = None
        self._ahead_from = 0

    def take(self, batch_nos: list[int]) -> dict[int, bytes]:
        missing = [b for b in batch_nos if b not in self._cache]
        if missing:
            fresh: dict[int, str] = {}
            if self._ahead is not None:
                if self._ahead_from <= min(missing):
                    fresh = self._ahead.result()
                self._ahead = None
            still = [b for b in missing if b not in fresh]
            if still:
                fresh.update(self._read(min(still), still))
            absent = [b for b in missing if b not in fresh]
            if absent:
                raise RuntimeError(f"batch {absent[0]} is recorded in the ledger but not in the plan "
                                   f"{self._plan_dir}: the plan folder was changed; stopping")
            self._cache = {**fresh, **{b: self._cache[b] for b in batch_nos if b in self._cache}}
        taken = {b: self._cache.pop(b).encode() for b in batch_nos}
        if self._ahead is None and self._cache and len(self._cache) < CHUNK // 2:
            self._ahead_from = max(self._cache) + 1
            self._ahead = self._reader.submit(self._read, self._ahead_from, [])
        return taken

    def _read(self, low: int, wanted_too: list[int]) -> dict[int, str]:
        wanted = pl.col("batch_no").is_between(low, low + CHUNK - 1) | pl.col("batch_no").is_in(wanted_too)
        fresh = dict(self._scan.filter(wanted).collect().iter_rows())
        if any(b not in fresh for b in wanted_too):
            # Recorded by the planner after this scan was opened: scan the plan's files again.
            self._scan = scan_batches(self._plan_dir, ["batch_no", "body"])
            fresh = dict(self._scan.filter(wanted).collect().iter_rows())
        return fresh

    def close(self) -> None:
        self._reader.shutdown(wait=True, cancel_futures=True)


class Heartbeat:
    """Renews this worker's leases from a thread with its own connection, whatever the event loop is doing."""

    def __init__(self, ledger: LedgerBase, run_id: str, worker_id: str, *, every: float = HEARTBEAT_SECONDS):
        self._ledger = ledger.reopen()
        self._args = (run_id, worker_id)
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat-{worker_id}", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self._every):
            try:
                self._ledger.heartbeat(*self._args)
            except Exception as exc:  # noqa: BLE001 - a missed beat is retried; the lease outlasts several
                log.warning("heartbeat failed (%s); retrying in %.0f s", type(exc).__name__, self._every)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._ledger.close()


class BatchWriter:
    """The two ledger writes of every batch: `sending` before it leaves (only while the claim is ours), then
    its result. A remote ledger (PostgreSQL) is written from threads over connections of their own, so the
    event loop keeps sending while a write waits for its round trip; SQLite is written in place (µs)."""

    def __init__(self, ledger: LedgerBase, run_id: str, worker_id: str, *, connections: int = WRITE_CONNECTIONS):
        self.run_id, self.worker_id = run_id, worker_id
        self._direct = None if ledger.REMOTE else ledger
        self._pool: queue.SimpleQueue[LedgerBase] = queue.SimpleQueue()
        self._opened: list[LedgerBase] = []
        self._executor = None
        if self._direct is None:
            self._opened = [ledger.reopen() for _ in range(connections)]
            for connection in self._opened:
                self._pool.put(connection)
            self._executor = ThreadPoolExecutor(connections, thread_name_prefix="ledger-writer")

    async def sending(self, batch_no: int) -> None:
        if not await self._call("mark_sending", self.run_id, batch_no, self.worker_id):
            raise ClaimLost(batch_no)

    async def result(self, result) -> None:
        await self._call("record_result", self.run_id, result)

    async def _call(self, method: str, *args):
        if self._direct is not None:
            return getattr(self._direct, method)(*args)
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._pooled, method, args)

    def _pooled(self, method: str, args: tuple):
        connection = self._pool.get()
        try:
            return getattr(connection, method)(*args)
        finally:
            self._pool.put(connection)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown()
        for connection in self._opened:
            connection.close()


class ClaimedBatches:
    """The batches this worker sends, claimed a block at a time; `exhausted` once nothing was left to claim."""

    def __init__(self, ledger: LedgerBase, run_id: str, worker_id: str, bodies: PlanBodies, block: int) -> None:
        self.ledger, self.run_id, self.worker_id = ledger, run_id, worker_id
        self.bodies = bodies
        self.block = block
        self.exhausted = False

    async def __aiter__(self) -> AsyncIterator[BatchRequest]:
        while True:
            claims = self.ledger.claim(self.run_id, self.worker_id, self.block)
            if not claims:
                self.exhausted = True
                return
            bodies = self.bodies.take([c.batch_no for c in claims])
            for claim in claims:
                yield BatchRequest(claim.batch_no, bodies[claim.batch_no], in_doubt=claim.in_doubt)


def apply_plan(run_id: str, plan_dir: Path, ledger: LedgerBase, settings: LoadSettings, endpoint: str, api_key: str,
               *, on_progress: Callable[[int, int], None] | None = None, transport=None, wait: bool = True,
               block: int | None = None, poll_seconds: float = POLL_SECONDS,
               planning: Callable[[], bool] | None = None) -> WorkerStats:
    """Claim and send batches of the run until none is left; returns this worker's WorkerStats.

    `wait`: then also wait until every batch of the run is final, taking over the batches of workers that
    died (this is what the run that commits does); without it the worker returns once nothing is claimable.
    `planning`: True while the planner may still record batches (braze_migrate/run/pipeline.py): the worker
    waits for them rather than finish.
    """
    progress = {"done": _done(ledger, run_id), "total": sum(ledger.status_counts(run_id).values())}
    still_planning = planning or (lambda: False)

    def report(done: int | None = None) -> None:
        progress["done"] = progress["done"] + 1 if done is None else done
        if on_progress is not None:
            if still_planning():
                progress["total"] = sum(ledger.status_counts(run_id).values())
            on_progress(progress["done"], progress["total"])

    rate = parse_rate(settings.rate_limit)
    with ExitStack() as stack:
        worker_id = ledger.register_worker(run_id)
        stack.callback(ledger.finish_worker, run_id, worker_id)
        budget_store = ledger.reopen(durable=False)
        stack.callback(budget_store.close)
        budget = LeasedBudget(budget_store, rate, key=budget_key(endpoint))
        writer = BatchWriter(ledger, run_id, worker_id)
        stack.callback(writer.close)
        stack.callback(Heartbeat(ledger, run_id, worker_id).stop)
        loader = BrazeLoader(
            endpoint, api_key, rate=rate, concurrency=settings.concurrency,
            timeout=settings.timeout_seconds, max_attempts=settings.max_attempts,
            max_retry_seconds=settings.max_retry_seconds, in_doubt_policy=settings.in_doubt, transport=transport,
            backoff=settings.retry_backoff_seconds, limiter=RateLimiter(rate, budget=budget),
        )

        async def on_result(result) -> None:
            await writer.result(result)
            if result.status == BatchState.ACKNOWLEDGED:
                report()

        report(progress["done"])
        stats = WorkerStats(worker_id=worker_id)
        bodies = PlanBodies(plan_dir)
        stack.callback(bodies.close)
        checked = transport is not None  # an injected transport (exact fault sequences) scripts every answer
        while True:
            ledger.expire_dead_owners(run_id)
            if not checked and ledger.claimable(run_id):
                # Once, when a batch is ready (nothing to send, no request), on a permit of the shared budget.
                asyncio.run(budget.acquire())
                check_credentials(endpoint, api_key)
                checked = True
            claims = ClaimedBatches(ledger, run_id, worker_id, bodies, block or settings.concurrency)
            _merge(stats, loader.run_sync(claims, on_sending=writer.sending, on_result=on_result))
            ledger.release(run_id, worker_id)
            stats.stopped = not claims.exhausted
            if stats.stopped or not (wait or still_planning()) or not _wait_for_work(
                    ledger, run_id, poll_seconds, report, still_planning):
                break
    log.info("worker %s: %d batches, %d requests, %d throttled; %d leases of the rate budget, %.1f ms each",
             worker_id, stats.batches, stats.requests, stats.throttled, budget.leases, budget.lease_cost * 1000)
    stats.leases, stats.lease_seconds = budget.leases, budget.lease_seconds
    return stats


def _wait_for_work(ledger: LedgerBase, run_id: str, poll_seconds: float, report: Callable[[int], None],
                   planning: Callable[[], bool]) -> bool:
    """While other workers finish their batches (or the planner writes more): True as soon as some batch is
    claimable (a worker died or let go, or the planner recorded one), False once planning is over and every
    batch of the run is final."""
    while True:
        more = planning()  # read before the counts: batches recorded before planning ended are counted
        counts = ledger.status_counts(run_id)
        if not more and not any(counts.get(s) for s in UNFINISHED_BATCHES):
            return False
        if ledger.claimable(run_id) or ledger.expire_dead_owners(run_id):
            return True
        report(counts.get(BatchState.ACKNOWLEDGED, 0))
        time.sleep(min(poll_seconds, PLANNING_POLL_SECONDS) if more else poll_seconds)


def _done(ledger: LedgerBase, run_id: str) -> int:
    """Progress is batches acknowledged of batches planned: a run that ends with pending ones stays below 100%."""
    return ledger.status_counts(run_id).get(BatchState.ACKNOWLEDGED, 0)


def _merge(total: LoadStats, part: LoadStats) -> None:
    """Fold one loader run's totals into the worker's."""
    for f in fields(LoadStats):
        mine, theirs = getattr(total, f.name), getattr(part, f.name)
        if isinstance(mine, dict):
            for key, count in theirs.items():
                mine[key] = mine.get(key, 0) + count
        elif isinstance(mine, list):
            mine.extend(theirs)
        else:
            setattr(total, f.name, mine + theirs)
