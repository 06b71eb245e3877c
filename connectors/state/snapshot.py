"""The snapshot of what Braze acknowledged, as compressed columnar Parquet in the state folder.

- `users`: `external_id` + one Utf8 column per attribute holding the last acknowledged Braze JSON value.
- `purchases` / `events`: acknowledged ids with the fingerprint of the object sent.
- `push_tokens`: acknowledged tokens, by `app_id:hash(token)` (never the raw token), and their user.
- `held`: objects that must not be sent again unchanged: rejected by Braze, or in doubt under `--in-doubt skip`.

Files are replaced atomically (write aside, fsync, rename), so a crash leaves either the old or the new one.
"""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl

SCHEMAS: dict[str, dict[str, pl.DataType]] = {
    "users": {"external_id": pl.Utf8},
    "purchases": {"key": pl.Utf8, "fingerprint": pl.UInt64},
    "events": {"key": pl.Utf8, "fingerprint": pl.UInt64},
    "push_tokens": {"key": pl.Utf8, "external_id": pl.Utf8},
    "held": {
        "dataset": pl.Utf8, "key": pl.Utf8, "fingerprint": pl.UInt64,
        "status": pl.Utf8, "reason": pl.Utf8, "run_id": pl.Utf8,
    },
}


class Snapshot:
    """Read and atomically replace the snapshot tables of one state folder."""

    def __init__(self, root: Path):
        self.root = root / "snapshot"
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, name: str) -> Path:
        return self.root / f"{name}.parquet"

    def scan(self, name: str) -> pl.LazyFrame:
        """The table as a LazyFrame; an empty frame of the right schema before the first commit."""
        p = self.path(name)
        if p.exists():
            return pl.scan_parquet(p)
        return pl.LazyFrame(schema=SCHEMAS[name])

    def columns(self, name: str) -> list[str]:
        return list(self.scan(name).collect_schema().names())

    def replace(self, name: str, frame: pl.LazyFrame | pl.DataFrame) -> None:
        """Write the new version beside the old one, then rename over it."""
        p = self.path(name)
        tmp = p.with_suffix(".parquet.tmp")
        df = frame.collect() if isinstance(frame, pl.LazyFrame) else frame
        df.write_parquet(tmp, compression="zstd", statistics=True)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, p)
