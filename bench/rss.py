"""Where a process's memory and time go: a sampler thread that reads RSS and the main thread's current line.

Polars releases the GIL while it collects, so every 50 ms the sampler sees which line of the planner
(or of a transform it calls) is running and the RSS at that moment. The peak per line names the collect,
join or write that needs the memory; the samples per line show where the time goes.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

PAGE = os.sysconf("SC_PAGE_SIZE")
WATCHED = ("braze_migrate", "transforms", "connectors")


def peak_rss_bytes() -> int:
    """This process's own peak RSS (`VmHWM`). `ru_maxrss` is no good in a child: Linux carries the parent's
    high-water mark across fork and exec, so a child of a 3 GB parent reports at least 3 GB."""
    with open("/proc/self/status") as fh:
        line = next(line for line in fh if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def rss_bytes() -> int:
    """Current resident set size of this process (Linux /proc)."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * PAGE


class PhaseTracer:
    """Samples (RSS, project lines of the main thread) until stopped; `phases()` keeps peaks and time."""

    def __init__(self, every: float = 0.05) -> None:
        self.every = every
        self._main = threading.main_thread().ident
        self._peaks: dict[str, int] = {}
        self._samples: dict[str, int] = {}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        self._thread.join()

    def phases(self) -> dict[str, dict]:
        """Per code location: peak RSS in bytes and seconds spent there; highest peak first."""
        return {where: {"peak_rss_bytes": peak, "seconds": round(self._samples[where] * self.every, 2)}
                for where, peak in sorted(self._peaks.items(), key=lambda kv: -kv[1])}

    def _run(self) -> None:
        while not self._done.wait(self.every):
            where = self._where()
            rss = rss_bytes()
            self._samples[where] = self._samples.get(where, 0) + 1
            if rss > self._peaks.get(where, 0):
                self._peaks[where] = rss

    def _where(self) -> str:
        """`module.py:line` chain of project frames, outermost first (e.g. planner.py:120 > payloads.py:85)."""
        frame = sys._current_frames().get(self._main)
        chain = []
        while frame is not None:
            path = Path(frame.f_code.co_filename)
            if path.parent.name in WATCHED:
                chain.append(f"{path.parent.name}/{path.name}:{frame.f_lineno}")
            frame = frame.f_back
        return " > ".join(reversed(chain)) or "other"
