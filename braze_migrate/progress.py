"""Progress of a run's long stages as events: what the core reports while it reads, plans, loads and commits.

The core only emits `ProgressEvent`s to a `ProgressSink` (any callable); how they are shown is up to the
edge: a bar or periodic lines on the terminal (cli/progress.py), a progress artifact in the Prefect UI
(flows/artifacts.py). Events carry counts only, never a value from the data.

A process may also register sinks with `listening(sink)`: flows run in the CLI's process send their events
to the sinks registered there, so the terminal shows a Prefect run as it happens too.
"""

from __future__ import annotations

import contextvars
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from connectors.state.ledger_base import LedgerBase

log = logging.getLogger(__name__)

Stage = Literal["reading", "planning", "loading", "committing"]
STAGES: tuple[Stage, ...] = ("reading", "planning", "loading", "committing")


@dataclass(frozen=True, slots=True)
class ProgressEvent:
    """Where a stage stands: `done` of `total` `unit`s (total None while unknown), and for loading what the
    requests cost so far. `finished` marks a stage's last event."""

    stage: Stage
    done: int
    total: int | None
    unit: str
    objects_done: int = 0
    objects_total: int | None = None
    requests: int = 0
    throttled: int = 0
    retries: int = 0
    in_doubt: int = 0
    detail: str = ""  # counts or a dataset/partition name: never a value from the data
    finished: bool = False


class ProgressSink(Protocol):
    def __call__(self, event: ProgressEvent) -> None: ...


_listeners: list[ProgressSink] = []
_lock = threading.Lock()


@contextmanager
def listening(sink: ProgressSink) -> Iterator[None]:
    """Send every event emitted in this process to `sink` while the block runs."""
    with _lock:
        _listeners.append(sink)
    try:
        yield
    finally:
        with _lock:
            _listeners.remove(sink)


def emit(event: ProgressEvent) -> None:
    """Send an event to the sinks registered with `listening`; a failing sink never stops the run."""
    with _lock:
        sinks = list(_listeners)
    for sink in sinks:
        try:
            sink(event)
        except Exception as exc:  # noqa: BLE001 - showing progress must not break loading
            log.debug("progress sink failed: %s", type(exc).__name__)


def fan_out(*sinks: ProgressSink | None) -> ProgressSink:
    """One sink feeding several (None entries are skipped), plus the process's listeners."""
    chosen = [s for s in sinks if s is not None]

    def send(event: ProgressEvent) -> None:
        for sink in chosen:
            sink(event)
        emit(event)

    return send


class Meter:
    """Rate and ETA of one stage from its events. The rate shown is the one over the last `window_s` seconds
    (so it follows a run that slows down on 429s), batches and requests over the same window, so the two
    figures agree. The ETA uses that rate smoothed over `smooth_s` seconds (an exponential average in time),
    so it eases from one estimate to the next instead of jumping, and a short stall does not turn it into "?".
    The clock is injectable: tests never sleep."""

    def __init__(self, *, window_s: float = 15.0, smooth_s: float = 20.0, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._window = window_s
        self._smooth_s = smooth_s
        self._samples: deque[tuple[float, int, int]] = deque()
        self._smoothed: float | None = None
        self._smoothed_at: float | None = None
        self.started = clock()
        self.event: ProgressEvent | None = None

    def update(self, event: ProgressEvent) -> None:
        now = self._clock()
        if self.event is not None and event.done < self.event.done:  # a new pass (e.g. resumed) restarts
            self._samples.clear()
            self._smoothed = None
        self.event = event
        self._samples.append((now, event.done, event.requests))
        while len(self._samples) > 2 and now - self._samples[0][0] > self._window:
            self._samples.popleft()
        rate = self.rate
        if rate is None or (self._smoothed is None and rate <= 0):
            return  # seeded by the first progress seen, not by a pause before it
        if self._smoothed is None or self._smoothed_at is None:
            self._smoothed = rate
        else:
            weight = 1.0 - math.exp(-(now - self._smoothed_at) / self._smooth_s)
            self._smoothed += weight * (rate - self._smoothed)
        self._smoothed_at = now

    @property
    def elapsed(self) -> float:
        return self._clock() - self.started

    def _over_window(self, index: int) -> float | None:
        if len(self._samples) < 2:
            return None
        first, last = self._samples[0], self._samples[-1]
        return (last[index] - first[index]) / (last[0] - first[0]) if last[0] > first[0] else None

    @property
    def rate(self) -> float | None:
        """Units per second over the window; None until two samples are apart in time."""
        return self._over_window(1)

    @property
    def request_rate(self) -> float | None:
        """Requests per second over the same window as `rate`."""
        return self._over_window(2)

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the smoothed rate; 0 once done, None while unknown."""
        e = self.event
        if e is None or e.total is None:
            return None
        left = max(0, e.total - e.done)
        if left == 0:
            return 0.0
        return left / self._smoothed if self._smoothed else None


def eta_text(seconds: float | None) -> str:
    """`ETA 1:02:03`, `ETA 4:05`, or `ETA ?` while unknown."""
    if seconds is None:
        return "ETA ?"
    s = round(seconds)
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"ETA {h}:{m:02d}:{s:02d}" if h else f"ETA {m}:{s:02d}"


def summary_text(meter: Meter, *, stage: bool = True) -> str:
    """One line for a stage: counts, rate, ETA and, while loading, what the requests met."""
    e = meter.event
    if e is None:
        return ""
    total = f"/{e.total:,}" if e.total is not None else ""
    pct = f" ({100.0 * e.done / e.total:.0f}%)" if e.total else ""
    parts = [f"{e.stage + ': ' if stage else ''}{e.done:,}{total} {e.unit}{pct}"]
    if e.detail:
        parts.append(e.detail)
    if e.stage == "loading" and e.objects_total is not None:
        parts.append(f"{e.objects_done:,}/{e.objects_total:,} objects")
    if e.total is None or e.total > 1:  # a one-step stage has no rate worth showing
        rate = meter.rate
        parts.append(f"{rate:,.1f} {e.unit}/s" if rate is not None else f"? {e.unit}/s")
    parts.append("done" if e.finished else eta_text(meter.eta_s))
    if e.stage == "loading":
        req = meter.request_rate
        parts += [f"{e.requests:,} requests" + (f" ({req:,.0f}/s)" if req is not None else ""),
                  f"{e.throttled} throttled (429)", f"{e.retries} retried", f"{e.in_doubt} in doubt"]
    return ", ".join(parts)


def loading_event(totals: dict, *, finished: bool = False) -> ProgressEvent:
    """A `loading` event from the ledger's totals of a run (`LedgerBase.totals`)."""
    return ProgressEvent(
        "loading", totals["acknowledged_batches"], totals["batches"], "batches",
        objects_done=totals["acknowledged_objects"], objects_total=totals["objects"], requests=totals["requests"],
        throttled=totals["throttled"], retries=totals["retries"], in_doubt=totals["in_doubt_batches"],
        finished=finished,
    )


WATCH_EVERY_S = 1.0


@contextmanager
def watching(ledger: LedgerBase, run_id: str, sink: ProgressSink, *, every_s: float = WATCH_EVERY_S) -> Iterator[None]:
    """`loading` events from the ledger every `every_s` while the block runs (and a last one after it).

    The ledger is what every worker of the run writes (this process, other processes, Dask workers), so the
    counts are the whole run's, a resumed run starts from what was acknowledged before, and the loader's
    event loop is never slowed by it. The thread has its own connection; it runs in a copy of the caller's
    context, so a Prefect task's sinks (artifacts) work from it."""
    own = ledger.reopen(durable=False)
    stop = threading.Event()

    def poll() -> None:
        while True:
            started = time.monotonic()
            try:
                sink(loading_event(own.totals(run_id)))
            except Exception as exc:  # noqa: BLE001 - a missed update is not worth failing the load
                log.debug("progress poll failed: %s", type(exc).__name__)
            # A big ledger answers slower: poll no more than a twentieth of the time.
            if stop.wait(max(every_s, 20 * (time.monotonic() - started))):
                return

    thread = threading.Thread(target=contextvars.copy_context().run, args=(poll,), name=f"progress-{run_id}",
                              daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        try:
            sink(loading_event(own.totals(run_id), finished=True))
        finally:
            own.close()
