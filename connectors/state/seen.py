"""The memo of unchanged users (`<state>/seen/<salt>/part-NNNNN.parquet`): a cache, never a record.

Each row says: a user whose export row hashes to `raw_hash` while their snapshot row hashes to
`values_hash` is planned as unchanged and clean (transforms/rowhash.py), and a full resend of that user
costs `data_points`. Every entry is a fact about two rows, not about the history, so an entry is never
wrong while its salt holds: a user whose snapshot row changed since (a commit, a delete, a repair) simply
no longer matches. Losing the folder, or a garbage file in it, costs one slow plan; nothing reads it but
the planner, and nothing in it is personal data beyond the external ids the snapshot already holds.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import polars as pl

SCHEMA = {"external_id": pl.Utf8, "raw_hash": pl.UInt64, "values_hash": pl.UInt64, "data_points": pl.Int64}


class SeenCache:
    """Read and update the memo of one state folder, one users partition at a time."""

    def __init__(self, state: Path):
        self.root = Path(state) / "seen"

    def _part(self, salt: str, p: int) -> Path:
        return self.root / salt / f"part-{p:05d}.parquet"

    def read(self, p: int, salt: str) -> pl.DataFrame | None:
        """The entries of partition p written under `salt`, or None (none yet, another salt, unreadable)."""
        path = self._part(salt, p)
        if not path.exists():
            return None
        try:
            frame = pl.read_parquet(path)
            return frame.select(list(SCHEMA)).cast(SCHEMA)
        except Exception:  # noqa: BLE001 — a damaged cache is a miss, never an error: the full path decides
            return None

    def update(self, p: int, salt: str, fresh: pl.DataFrame) -> None:
        """Entries of `fresh` replace those of the same users; the rest stay. Memos of another salt go."""
        for other in self.root.glob("*"):
            if other.name != salt and other.is_dir():
                shutil.rmtree(other, ignore_errors=True)
        old = self.read(p, salt)
        fresh = fresh.select(list(SCHEMA)).cast(SCHEMA)
        merged = fresh if old is None else pl.concat([old.join(fresh, on="external_id", how="anti"), fresh])
        path = self._part(salt, p)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".parquet.tmp")
        merged.write_parquet(tmp, compression="lz4")
        os.replace(tmp, path)
