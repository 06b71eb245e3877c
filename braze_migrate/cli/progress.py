"""The run's progress on the terminal, always on stderr (stdout stays for `--json`).

On a terminal: one updating bar per stage (rich) with counts, rate, ETA and what the requests met. Anywhere
else (cron, CI, Prefect workers, a pipe): a plain line when a stage starts, every `every_s` seconds, and when
it ends, so a log shows the run moving without drowning in it.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

from braze_migrate import progress
from braze_migrate.progress import Meter, ProgressEvent, summary_text

PLAIN_EVERY_S = 10.0
EVERY_ENV = "BRAZE_MIGRATE_PROGRESS_SECONDS"  # seconds between plain lines (cron logs, tests)


class PlainLines:
    """Periodic plain lines: `[braze-migrate] loading: 1,200/5,000 batches (24%), ..., ETA 0:12`."""

    def __init__(self, stream: TextIO, *, every_s: float = PLAIN_EVERY_S, clock: Callable[[], float] = time.monotonic):
        self._stream, self._every, self._clock = stream, every_s, clock
        self._meters: dict[str, Meter] = {}
        self._printed: dict[str, float] = {}

    def __call__(self, event: ProgressEvent) -> None:
        meter = self._meters.get(event.stage)
        if meter is None:
            meter = self._meters[event.stage] = Meter(clock=self._clock)
        meter.update(event)
        now = self._clock()
        last = self._printed.get(event.stage)
        if last is None or event.finished or now - last >= self._every:
            self._printed[event.stage] = now
            self._stream.write(f"[braze-migrate] {summary_text(meter)}\n")
            self._stream.flush()

    def close(self) -> None:
        pass


class Bars:
    """One rich bar per stage, redrawn in place a few times a second."""

    def __init__(self, stream: TextIO, *, clock: Callable[[], float] = time.monotonic):
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn

        self._clock = clock
        self._console = Console(file=stream, force_terminal=True)
        self._progress = Progress(
            TextColumn("[bold]{task.fields[stage]:<10}"), BarColumn(bar_width=24), TextColumn("{task.description}"),
            console=self._console, refresh_per_second=4, transient=False,
        )
        self._progress.start()
        self._tasks: dict[str, tuple[int, Meter]] = {}
        self._quieted: dict[logging.Handler, int] = {}

    def _quiet_console_logs(self) -> None:
        """INFO lines of console log handlers (Prefect's) would be drawn through the live bars: while they are
        shown, those handlers print warnings and errors only. The lines still reach the Prefect UI, and a
        terminal-less run (plain lines) keeps them all."""
        loggers = [logging.getLogger(), *(x for x in logging.root.manager.loggerDict.values()
                                          if isinstance(x, logging.Logger))]
        for handler in {h for logger in loggers for h in logger.handlers}:
            if (isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)
                    and handler not in self._quieted and handler.level < logging.WARNING):
                self._quieted[handler] = handler.level
                handler.setLevel(logging.WARNING)

    def __call__(self, event: ProgressEvent) -> None:
        self._quiet_console_logs()
        if event.stage not in self._tasks:
            task = self._progress.add_task("", total=event.total, stage=event.stage)
            self._tasks[event.stage] = (task, Meter(clock=self._clock))
        task, meter = self._tasks[event.stage]
        meter.update(event)
        self._progress.update(task, completed=event.done, total=event.total,
                              description=summary_text(meter, stage=False))

    def close(self) -> None:
        self._progress.stop()
        for handler, level in self._quieted.items():
            handler.setLevel(level)


def renderer(stream: TextIO | None = None, *, tty: bool | None = None):
    """Bars on a terminal, plain lines elsewhere."""
    stream = stream or sys.stderr
    if tty is None:
        tty = stream.isatty() and os.environ.get("TERM") != "dumb"
    if tty:
        return Bars(stream)
    return PlainLines(stream, every_s=float(os.environ.get(EVERY_ENV) or PLAIN_EVERY_S))


@contextmanager
def showing(enabled: bool = True, stream: TextIO | None = None) -> Iterator[None]:
    """Show the progress of everything run in this process (inline or a local Prefect flow) on stderr."""
    if not enabled:
        yield
        return
    sink = renderer(stream)
    try:
        with progress.listening(sink):
            yield
    finally:
        sink.close()
