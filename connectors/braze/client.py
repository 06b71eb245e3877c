"""The loader of `POST /users/track`: a pool of workers that sends planned batches at the speed Braze allows.

The client is five modules, one concern each:
- transport.py: the URL, the prebuilt POSTs (where a request is built: `PostFactory.__call__`), the pool;
- ratelimit.py: the rate limiter every request passes (`RateLimiter.acquire`), its budget and Braze's headers;
- retries.py: the one tenacity layer (`braze_retrying`, `with_retries`);
- splitting.py: a rejected request split to isolate its poison objects (`Part`);
- outcomes.py: every answer classified (`classify`) into results per object, indexed by the batch as planned;
- and this module: the worker pool (`BrazeLoader`), write-ahead callbacks, signals, in-doubt handling.

Override points (as the Singer SDK documents `validate_response` and friends):
- `outcomes.classify(status, content, headers)`: which answers are success, retried, split or final;
- `retries.braze_retrying(...)`: the stop and wait conditions of the one retry layer;
- `splitting.Part.split`: how a rejected request is halved;
- `BrazeLoader(transport=..., limiter=...)`: the HTTP transport and the rate limiter (a shared budget);
- `BrazeLoader.run(batches, on_sending=..., on_result=...)`: the write-ahead callbacks (the ledger's
  `mark_sending` before the first byte leaves, `record_result` after Braze answered).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import signal
import threading
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

import httpx
from tenacity import (
    RetryCallState,
)

from connectors.braze.outcomes import (
    ARRAYS,
    BatchResult,
    BrazeEndpointError,
    BrazeError,
    BrazeRejected,
    BrazeThrottled,
    BrazeTooLarge,
    BrazeTransientError,
    BrazeUnexpectedStatus,
    LoadStats,
    ObjectError,
    SentError,
    classify,
    classify_exception,
)
from connectors.braze.ratelimit import Clock, Rate, RateLimiter, Sleep
from connectors.braze.retries import BACKOFF_INITIAL, braze_retrying, with_retries
from connectors.braze.splitting import Part
from connectors.braze.transport import (
    TRANSPORT_ERRORS,
    PostFactory,
    Transport,
    default_transport,
    open_transport,
    read_body,
    rest_base_url,
)
from connectors.states import BatchState

log = logging.getLogger(__name__)

POLICIES = ("resend", "skip")
PROGRESS_EVERY = 1000
FAILING_WARN_S = 30.0  # while retries fail: a WARNING at most this often, naming the error


@dataclass(frozen=True, slots=True)
class BatchRequest:
    """One planned request. `in_doubt`: an earlier process may have sent it (crash after sending)."""

    batch_no: int
    body: bytes
    in_doubt: bool = False


class _Batch:
    """What is known about one planned batch while it is delivered."""

    __slots__ = (
        "announced",
        "batch_no",
        "errors",
        "in_doubt",
        "not_started",
        "pending",
        "requests",
        "retries",
        "status_codes",
        "throttled",
        "unmapped",
    )

    def __init__(self, batch_no: int) -> None:
        self.batch_no = batch_no
        self.in_doubt = False
        self.announced = False
        self.not_started = False
        self.errors: dict[tuple[str, int], str] = {}
        self.pending: list[tuple[str, int]] = []
        self.requests = self.retries = self.throttled = self.unmapped = 0
        self.status_codes: dict[str, int] = {}

    def count(self, key: str) -> None:
        self.status_codes[key] = self.status_codes.get(key, 0) + 1

    def reject(self, array: str, index: int, reason: str) -> None:
        """Record Braze's reason; several reasons for one object are joined."""
        key = (array, index)
        self.errors[key] = f"{self.errors[key]}; {reason}" if key in self.errors else reason

    def accept(self, part: Part, sent_errors: list[SentError]) -> None:
        """A 2xx: every object was processed except those Braze named (by index of the array as sent)."""
        for array, sent, reason in sent_errors:
            index = part.planned(array, sent)
            if index is None:
                self.unmapped += 1
            else:
                self.reject(array, index, reason)

    def result(self) -> BatchResult:
        order = {array: rank for rank, array in enumerate(ARRAYS)}
        errors = [ObjectError(array, index, reason) for (array, index), reason in self.errors.items()]
        errors.sort(key=lambda error: (order[error.array], error.index))
        pending = sorted(set(self.pending), key=lambda obj: (order[obj[0]], obj[1]))
        return BatchResult(
            batch_no=self.batch_no,
            status=BatchState.PENDING if pending else BatchState.ACKNOWLEDGED,
            errors=errors,
            pending=pending,
            in_doubt=self.in_doubt,
            requests=self.requests,
            retries=self.retries,
            throttled=self.throttled,
            status_codes=self.status_codes,
        )


class _Send:
    """One request being retried: the body in force (the skip policy may strip events) and its counters."""

    __slots__ = ("batch", "doubt", "failures", "part", "started")

    def __init__(self, part: Part, batch: _Batch, started: float, *, failures: int = 0, doubt: bool = False):
        self.part = part
        self.batch = batch
        self.started = started
        self.failures = failures
        self.doubt = doubt


class _Stopped(Exception):
    """stop() was called: this request is not sent."""


class _NothingLeft(Exception):
    """The skip policy removed every object of the request: nothing to resend."""


class _Source:
    """Batches from a plain or an async iterable, shared by all workers."""

    def __init__(self, batches: Iterable[BatchRequest] | AsyncIterable[BatchRequest]) -> None:
        self._aiter = batches.__aiter__() if isinstance(batches, AsyncIterable) else None
        self._iter = None if self._aiter is not None else iter(batches)
        self._lock = asyncio.Lock()

    async def next(self) -> BatchRequest | None:
        if self._iter is not None:
            return next(self._iter, None)
        async with self._lock:
            try:
                return await self._aiter.__anext__()
            except StopAsyncIteration:
                return None


class BrazeLoader:
    """Sends planned `/users/track` batches with bounded concurrency, within the rate limit.

    `on_sending(batch_no)` runs (and must persist its write-ahead record) before the first byte of a batch
    is sent; `on_result(BatchResult)` once that batch has its final result. Either may be a coroutine
    function. `stop()` lets in-flight requests finish, retries nothing more and starts no new batch.
    """

    def __init__(
        self,
        endpoint: str,
        api_key: str | Any,
        *,
        rate: Rate,
        concurrency: int = 16,
        timeout: float = 30,
        max_attempts: int = 6,
        max_retry_seconds: float = 300,
        in_doubt_policy: str = "skip",
        transport: Transport | None = None,
        clock: Clock | None = None,
        sleep: Sleep | None = None,
        wall_clock: Clock | None = None,
        limiter: RateLimiter | None = None,
        backoff: float = BACKOFF_INITIAL,
    ) -> None:
        if in_doubt_policy not in POLICIES:
            raise ValueError(f"in_doubt_policy must be one of {POLICIES}, got {in_doubt_policy!r}")
        if concurrency < 1 or max_attempts < 1 or timeout <= 0 or max_retry_seconds <= 0:
            raise ValueError("concurrency, max_attempts, timeout and max_retry_seconds must be positive")
        self.endpoint = rest_base_url(endpoint)
        self.rate = rate
        self.concurrency = concurrency
        self.in_doubt_policy = in_doubt_policy
        self._post = PostFactory(self.endpoint + "/users/track", api_key, timeout)
        self._transport = transport or partial(default_transport, concurrency)
        self._clock = clock or time.monotonic
        self._sleep = sleep or asyncio.sleep
        self.limiter = limiter or RateLimiter(rate, clock=self._clock, wall_clock=wall_clock, sleep=self._sleep)
        self._stopped = threading.Event()
        self._retrying = braze_retrying(
            limiter=self.limiter, max_attempts=max_attempts, max_seconds=max_retry_seconds,
            clock=self._clock, stopped=self._stopped, before_sleep=self._before_sleep, backoff=backoff,
        )
        self._warned_at: float | None = None  # the last "Braze is not answering" warning
        self._failed_since_warning = 0
        self._in_flight: set[int] = set()
        self._active: httpx.AsyncBaseTransport | None = None
        self._fatal: BrazeError | None = None
        self._waiting: dict[asyncio.Task, bool] = {}
        self.stats = LoadStats()

    def __repr__(self) -> str:
        return f"BrazeLoader(endpoint={self.endpoint!r}, rate='{self.rate}', concurrency={self.concurrency})"

    def _before_sleep(self, retry_state: RetryCallState) -> None:
        """Count the retry; while requests keep failing, one WARNING naming the error every FAILING_WARN_S."""
        _count_retry(retry_state)
        error = retry_state.outcome.exception()
        if isinstance(error, BrazeThrottled):
            return
        now = self._clock()
        self._failed_since_warning += 1
        if self._warned_at is None or now - self._warned_at >= FAILING_WARN_S:
            since = "" if self._warned_at is None else f" in the last {now - self._warned_at:.0f} s"
            log.warning("Braze is not answering: %s; %d failed attempts%s, retrying (batches left pending after "
                        "their last attempt are resumed by the next run)", error, self._failed_since_warning, since)
            self._warned_at, self._failed_since_warning = now, 0

    @property
    def in_flight(self) -> list[int]:
        """Batches announced through on_sending without a result yet: in doubt if the run ends now."""
        return sorted(self._in_flight)

    def stop(self) -> None:
        """Start no new batch and no new request; in-flight requests finish and are reported, and senders
        waiting for rate permits give up their wait at once."""
        if not self._stopped.is_set():
            self._stopped.set()
            log.info("Braze load stopping: %d batches in flight", len(self._in_flight))
        for task in list(self._waiting):
            task.get_loop().call_soon_threadsafe(self._interrupt, task)

    def _interrupt(self, task: asyncio.Task) -> None:
        """In the loop's thread: cancel a task only while it still waits (never a request on the wire)."""
        if task in self._waiting and not self._waiting[task]:
            self._waiting[task] = True
            task.cancel()

    def _fail(self, error: BrazeError) -> None:
        """An answer that makes every further request pointless: stop, and raise it once the run drained."""
        if self._fatal is None:
            self._fatal = error
            log.error("Braze load stopping: %s", error)
        self.stop()

    async def _waits(self, waiting: Awaitable[Any]) -> None:
        """Await a wait (rate permits, a 429 pause, a backoff) that stop() cuts short with _Stopped: waits can
        be long and must never delay an interruption. Costs ~0.3 µs, where racing a future costs ~13 µs."""
        if self._stopped.is_set():
            waiting.close()
            raise _Stopped()
        task = asyncio.current_task()
        self._waiting[task] = False
        try:
            await waiting
        except asyncio.CancelledError:
            if not self._waiting.get(task):
                raise
            task.uncancel()
            raise _Stopped() from None
        finally:
            self._waiting.pop(task, None)
        if self._stopped.is_set():
            raise _Stopped()

    async def _pause(self, seconds: float) -> None:
        """The retry layer's sleep, interruptible."""
        await self._waits(self._sleep(seconds))

    def run_sync(
        self,
        batches: Iterable[BatchRequest] | AsyncIterable[BatchRequest],
        on_sending: Callable[[int], Any],
        on_result: Callable[[BatchResult], Any],
    ) -> LoadStats:
        """`run` in a fresh event loop; a first SIGINT/SIGTERM stops, a second cancels (main thread only)."""
        return asyncio.run(self._run_with_signals(batches, on_sending, on_result))

    async def run(
        self,
        batches: Iterable[BatchRequest] | AsyncIterable[BatchRequest],
        on_sending: Callable[[int], Any],
        on_result: Callable[[BatchResult], Any],
    ) -> LoadStats:
        """Deliver every batch; returns the run's totals. BrazeConfigError and callback errors stop it."""
        self.stats = stats = LoadStats()
        self._fatal = None
        started = self._clock()
        source = _Source(batches)
        self._active, owned = open_transport(self._transport)
        workers = [
            asyncio.create_task(self._worker(source, on_sending, on_result, stats))
            for _ in range(self.concurrency)
        ]
        try:
            await _wait_all(workers)
        except BaseException:
            stats.abandoned = self.in_flight
            if stats.abandoned:
                log.warning("Braze load ended with %d batches in flight: %s", len(stats.abandoned), stats.abandoned)
            raise
        finally:
            stats.elapsed = self._clock() - started
            if owned:
                await self._active.aclose()
            self._active = None
        if self._fatal is not None:
            raise self._fatal
        log.info(
            "Braze load done: %d batches (%d acknowledged, %d pending, %d in doubt), %d requests, "
            "%d retries, %d throttled, %.1f s",
            stats.batches, stats.acknowledged, stats.pending, len(stats.in_doubt), stats.requests,
            stats.retries, stats.throttled, stats.elapsed,
        )
        return stats

    async def _run_with_signals(self, batches, on_sending, on_result) -> LoadStats:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()

        def on_signal() -> None:
            if self._stopped.is_set():
                task.cancel()
            else:
                self.stop()

        installed = []
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(signum, on_signal)
                installed.append(signum)
            except (NotImplementedError, RuntimeError, ValueError):
                break
        try:
            return await self.run(batches, on_sending, on_result)
        finally:
            for signum in installed:
                loop.remove_signal_handler(signum)

    async def _worker(self, source: _Source, on_sending, on_result, stats: LoadStats) -> None:
        while not self._stopped.is_set():
            request = await source.next()
            if request is None:
                return
            result = await self._deliver_batch(request, on_sending)
            if result is None:
                return
            await _call(on_result, result)
            self._in_flight.discard(result.batch_no)
            stats.add(result)
            if stats.batches % PROGRESS_EVERY == 0:
                log.info(
                    "Braze load: %d batches, %d requests, %d retries, %d throttled",
                    stats.batches, stats.requests, stats.retries, stats.throttled,
                )

    async def _deliver_batch(self, request: BatchRequest, on_sending) -> BatchResult | None:
        """Deliver one planned batch; None when stop() came before anything of it was sent."""
        batch = _Batch(request.batch_no)
        part = Part(request.body, request.batch_no)
        send = _Send(part, batch, self._clock())
        if request.in_doubt:
            # Resume after a crash that followed the send: as if it had already had one 5xx.
            send.failures, send.doubt = 1, True
            if self._apply_doubt(send):
                await self._send_part(send, on_sending)
        else:
            await self._send_part(send, on_sending)
        if batch.not_started:
            return None
        if batch.unmapped:
            log.warning("batch %d: Braze named %d objects that the request did not hold", batch.batch_no, batch.unmapped)
        return batch.result()

    async def _send_part(self, send: _Send, on_sending) -> None:
        """Send one request with retries, then dispatch on the outcome's marker."""
        batch = send.batch
        try:
            sent_errors = await with_retries(self._retrying, self._pause, self._attempt, send, on_sending)
        except BrazeEndpointError as wrong:
            # Not Braze answering: nothing is acknowledged; events of a 2xx may have landed (in doubt).
            batch.pending.extend(send.part.objects())
            batch.in_doubt = batch.in_doubt or send.doubt or (wrong.may_have_applied and send.part.has_events())
            self._fail(wrong)
        except BrazeRejected as rejected:
            await self._isolate(send.part, batch, rejected, on_sending)
        except BrazeTooLarge:
            await self._split_or_reject(send.part, batch, "413: request body too large", on_sending)
        except (BrazeTransientError, BrazeUnexpectedStatus, _Stopped) as exc:
            if isinstance(exc, _Stopped) and not batch.announced:
                batch.not_started = True
            batch.pending.extend(send.part.objects())
            batch.in_doubt = batch.in_doubt or send.doubt
        except _NothingLeft:
            return
        else:
            batch.accept(send.part, sent_errors)

    async def _isolate(self, part: Part, batch: _Batch, rejected: BrazeRejected, on_sending) -> None:
        """400: reject the objects Braze named if that is all of them; otherwise split to find them."""
        named: dict[tuple[str, int], str] = {}
        for array, sent, reason in rejected.errors:
            index = part.planned(array, sent)
            if index is not None:
                named.setdefault((array, index), reason)
        objects = part.objects()
        if len(objects) > 1 and not set(objects) <= named.keys():
            await self._split(part, batch, on_sending)
            return
        for array, index in objects:
            batch.reject(array, index, named.get((array, index), rejected.braze_message))

    async def _split_or_reject(self, part: Part, batch: _Batch, reason: str, on_sending) -> None:
        if len(part) > 1:
            await self._split(part, batch, on_sending)
        else:
            for array, index in part.objects():
                batch.reject(array, index, reason)

    async def _split(self, part: Part, batch: _Batch, on_sending) -> None:
        """Halves are sent one after the other, keeping Braze's attributes-then-events order."""
        for half in part.split():
            await self._send_part(_Send(half, batch, self._clock()), on_sending)

    async def _attempt(self, send: _Send, on_sending) -> list[SentError]:
        """One HTTP request: wait for the limiter, announce the batch once, POST, classify."""
        batch = send.batch
        await self._waits(self.limiter.acquire())
        if not batch.announced:
            await _call(on_sending, batch.batch_no)
            self._in_flight.add(batch.batch_no)
            batch.announced = True
        batch.requests += 1
        request = self._post(send.part.body)
        try:
            response = await self._active.handle_async_request(request)
            content = await read_body(response)
        except TRANSPORT_ERRORS as exc:
            error = classify_exception(exc)
            batch.count(error.key if isinstance(error, BrazeTransientError) else "transport")
            raise self._failed(send, error) from None
        status = response.status_code
        batch.count(str(status))
        self.limiter.observe(status, response.headers)
        try:
            return classify(status, content, response.headers)
        except BrazeTransientError as error:
            raise self._failed(send, error) from None
        except BrazeError as error:
            error.batch_no = batch.batch_no
            raise

    def _failed(self, send: _Send, error: BrazeError) -> BaseException:
        """Book a failed try; after one that may have applied, apply the in-doubt policy."""
        error.batch_no = send.batch.batch_no
        if isinstance(error, BrazeThrottled):
            send.batch.throttled += 1
            return error
        if not isinstance(error, BrazeTransientError):
            return error
        send.failures += 1
        if error.may_have_applied:
            send.doubt = True
            if not self._apply_doubt(send):
                return _NothingLeft()
        return error

    def _apply_doubt(self, send: _Send) -> bool:
        """Events/purchases of a request that may have landed: `resend` them (flag the batch in doubt)
        or `skip` them (pending, in doubt) and keep only the idempotent attributes. False if nothing is left."""
        if not send.part.has_events():
            return True
        send.batch.in_doubt = True
        if self.in_doubt_policy == "resend":
            return True
        send.batch.pending.extend(send.part.events_and_purchases())
        rest = send.part.attributes_only()
        if rest is None:
            return False
        send.part = rest
        return True


def _count_retry(retry_state: RetryCallState) -> None:
    """tenacity before_sleep: count resends caused by failures (429s are counted as throttled)."""
    if not isinstance(retry_state.outcome.exception(), BrazeThrottled):
        retry_state.args[0].batch.retries += 1


async def _call(callback: Callable[..., Any], *args: Any) -> None:
    """Call a sync or async callback."""
    outcome = callback(*args)
    if inspect.isawaitable(outcome):
        await outcome


async def _wait_all(tasks: list[asyncio.Task]) -> None:
    """Wait for every task; the first failure (or our cancellation) cancels the rest and is raised."""
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    except asyncio.CancelledError:
        await _cancel(tasks)
        raise
    failed = [task for task in done if not task.cancelled() and task.exception() is not None]
    if failed:
        await _cancel(tasks)
        raise failed[0].exception()


async def _cancel(tasks: list[asyncio.Task]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
