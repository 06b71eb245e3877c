"""The snapshot of what Braze acknowledged, as compressed columnar Parquet in the state folder.

- `users/part-NNNNN.parquet`: `external_id` + one Utf8 column per attribute holding the last acknowledged
  Braze JSON value, split by a stable hash of `external_id` (the partition count is fixed at the first
  commit and kept in `meta.json`, so tonight's partition p always meets the same users).
- `purchases` / `events`: acknowledged ids with the fingerprint of the object sent.
- `push_tokens`: acknowledged tokens, by `app_id:hash(token)` (never the raw token), and their user.
- `held`: objects that must not be sent again unchanged: rejected by Braze, or in doubt under `--in-doubt skip`.

Files are replaced atomically (write aside, fsync, rename), so a crash leaves either the old or the new one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import polars as pl
import polars_hash  # noqa: F401  (registers the stable `.nchash` namespace)

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


def partition_of(key: pl.Expr, partitions: int) -> pl.Expr:
    """The partition of a key: a hash stable across Polars versions and machines, modulo the count."""
    return (key.nchash.xxh3_64() % partitions).fill_null(0).cast(pl.Int64)


class Snapshot:
    """Read and atomically replace the snapshot tables of one state folder."""

    def __init__(self, root: Path):
        self.root = root / "snapshot"
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, name: str) -> Path:
        return self.root / f"{name}.parquet"

    def scan(self, name: str) -> pl.LazyFrame:
        """The table as a LazyFrame; an empty frame of the right schema before the first commit."""
        if name == "users":
            files = sorted((self.root / "users").glob("part-*.parquet"))
            # Parts committed on different nights may hold different attribute columns: union them.
            return pl.concat([pl.scan_parquet(f) for f in files], how="diagonal_relaxed") if files \
                else pl.LazyFrame(schema=SCHEMAS["users"])
        p = self.path(name)
        if p.exists():
            return pl.scan_parquet(p)
        return pl.LazyFrame(schema=SCHEMAS[name])

    def partitions(self, default: int) -> int:
        """The users partition count: fixed by the first commit, else `default` (and recorded now)."""
        meta = self.root / "meta.json"
        if meta.exists():
            return int(json.loads(meta.read_text())["partitions"])
        _atomic_write_text(meta, json.dumps({"partitions": default}))
        return default

    def users_part_path(self, p: int) -> Path:
        return self.root / "users" / f"part-{p:05d}.parquet"

    def scan_users_part(self, p: int) -> pl.LazyFrame:
        path = self.users_part_path(p)
        return pl.scan_parquet(path) if path.exists() else pl.LazyFrame(schema=SCHEMAS["users"])

    def replace_users_part(self, p: int, frame: pl.DataFrame) -> None:
        path = self.users_part_path(p)
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write_parquet(path, frame)

    def columns(self, name: str) -> list[str]:
        return list(self.scan(name).collect_schema().names())

    def replace(self, name: str, frame: pl.LazyFrame | pl.DataFrame) -> None:
        """Write the new version beside the old one, then rename over it."""
        _atomic_write_parquet(self.path(name), frame.collect() if isinstance(frame, pl.LazyFrame) else frame)


def _atomic_write_parquet(path: Path, df: pl.DataFrame) -> None:
    tmp = path.with_suffix(".parquet.tmp")
    df.write_parquet(tmp, compression="zstd", statistics=True)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
