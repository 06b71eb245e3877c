"""The snapshot of what Braze acknowledged, as compressed columnar Parquet in the state folder.

- `users/part-NNNNN.parquet`: `external_id` + one Utf8 column per attribute holding the last acknowledged
  Braze JSON value, split by a stable hash of `external_id` (the partition count is fixed at the first
  commit and kept in `meta.json`, so tonight's partition p always meets the same users).
- `purchases` / `events` / `orders` / `order_refunds` / `order_cancellations`: acknowledged ids with the
  fingerprint of the object sent.
- `push_tokens`: acknowledged tokens, by `app_id:hash(token)` (never the raw token), and their user.
- `held`: objects that must not be sent again unchanged: rejected by Braze, or in doubt under `--in-doubt skip`.
- `types`: the type contract, the JSON kind of each attribute as Braze first acknowledged it.

Files are replaced atomically (write aside, fsync, rename), so a crash leaves either the old or the new one.
With a `journal` (connectors/state/integrity.py), every replacement is recorded in the ledger (rows, size,
SHA-256) before and after the rename, so a lost or truncated file is found before the next run sends.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl
import polars_hash  # noqa: F401  (registers the stable `.nchash` namespace)

if TYPE_CHECKING:
    from connectors.state.integrity import SnapshotJournal

SCHEMAS: dict[str, dict[str, pl.DataType]] = {
    "users": {"external_id": pl.Utf8},
    "purchases": {"key": pl.Utf8, "fingerprint": pl.UInt64},
    "events": {"key": pl.Utf8, "fingerprint": pl.UInt64},
    # eCommerce events (transforms/ecommerce.py): acknowledged order (or refund) ids, like purchases.
    "orders": {"key": pl.Utf8, "fingerprint": pl.UInt64},
    "order_refunds": {"key": pl.Utf8, "fingerprint": pl.UInt64},
    "order_cancellations": {"key": pl.Utf8, "fingerprint": pl.UInt64},
    "push_tokens": {"key": pl.Utf8, "external_id": pl.Utf8},
    # The type contract (transforms/type_contract.py): the JSON kind Braze first acknowledged per attribute.
    "types": {"attribute": pl.Utf8, "kind": pl.Utf8},
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

    def __init__(self, root: Path, *, journal: SnapshotJournal | None = None):
        self.root = root / "snapshot"
        self.root.mkdir(parents=True, exist_ok=True)
        self.journal = journal

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
            try:
                partitions = json.loads(meta.read_text())["partitions"]
            except (ValueError, KeyError, TypeError, UnicodeDecodeError):
                partitions = None
            if isinstance(partitions, int) and partitions > 0:
                return partitions
            from connectors.state.integrity import StateDamaged

            raise StateDamaged(
                f"{meta} is not a record of the users partition count: rebuild the snapshot with `braze-migrate "
                f"repair --state {self.root.parent}`, or restore the state folder from a backup"
            )
        _atomic_write_text(meta, json.dumps({"partitions": default}), self._journaled(meta))
        return default

    def users_part_path(self, p: int) -> Path:
        return self.root / "users" / f"part-{p:05d}.parquet"

    def scan_users_part(self, p: int) -> pl.LazyFrame:
        path = self.users_part_path(p)
        return pl.scan_parquet(path) if path.exists() else pl.LazyFrame(schema=SCHEMAS["users"])

    def replace_users_part(self, p: int, frame: pl.DataFrame) -> None:
        path = self.users_part_path(p)
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write_parquet(path, frame, self._journaled(path))

    def columns(self, name: str) -> list[str]:
        return list(self.scan(name).collect_schema().names())

    def replace(self, name: str, frame: pl.LazyFrame | pl.DataFrame) -> None:
        """Write the new version beside the old one, then rename over it."""
        path = self.path(name)
        _atomic_write_parquet(path, frame.collect() if isinstance(frame, pl.LazyFrame) else frame,
                              self._journaled(path))

    def _journaled(self, path: Path) -> tuple[SnapshotJournal, str] | None:
        """(journal, name relative to the snapshot folder) when writes are journaled."""
        return (self.journal, path.relative_to(self.root).as_posix()) if self.journal is not None else None


def _atomic_write_parquet(path: Path, df: pl.DataFrame, journaled: tuple[SnapshotJournal, str] | None = None) -> None:
    tmp = path.with_suffix(".parquet.tmp")
    df.write_parquet(tmp, compression="zstd", statistics=True)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    _rename(tmp, path, journaled)


def _atomic_write_text(path: Path, text: str, journaled: tuple[SnapshotJournal, str] | None = None) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    _rename(tmp, path, journaled)


def _rename(tmp: Path, path: Path, journaled: tuple[SnapshotJournal, str] | None) -> None:
    """Rename into place; a journal records the new digest before (as possible) and after (as the only one)."""
    if journaled is None:
        os.replace(tmp, path)
        return
    from connectors.state.integrity import digest_of

    journal, name = journaled
    journal.intend(name, digest_of(tmp))
    os.replace(tmp, path)
    journal.done(name)
