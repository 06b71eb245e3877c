"""What the snapshot must contain, recorded in the ledger at every commit, and the check against it.

The snapshot (Parquet in the state folder) is the memory of what Braze acknowledged: a lost or truncated
file would make the next sync resend acknowledged events and purchases, which Braze duplicates forever.
So every file the snapshot writes is journaled in the ledger (`snapshot_files`: rows, size, SHA-256),
in two steps that leave no window for a crash: the new digest is recorded as `next` before the file is
renamed into place, and promoted to `current` after. A file then matches the record when it matches
either digest. `check_snapshot` compares the folder with the record before anything is planned or
committed; `StateDamaged` stops the run with one line naming the damage and the way back (`repair`, or a
restore), and nothing is sent.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import polars as pl

from connectors.states import RunState

# Runs whose plan is still needed to finish them ("planning" ones are thrown away and planned again).
UNFINISHED = (RunState.PLANNED, RunState.LOADING, RunState.LOADED)
# Files of the snapshot folder that are not data: temporary files of an interrupted atomic write.
TEMPORARY = (".tmp",)


class StateDamaged(Exception):
    """The state folder does not hold what the ledger says was acknowledged; the message is one line
    naming what is damaged and how to recover. Nothing was sent."""


class SqlLedger(Protocol):
    """What the journal needs of a ledger (`LedgerBase`): its SQL executor and transactions."""

    def _execute(self, sql: str, params: tuple = ()): ...

    def _transaction(self): ...


@dataclass(frozen=True, slots=True)
class Digest:
    """Rows (Parquet: from the footer; other files: lines), size in bytes and SHA-256 of one file."""

    rows: int
    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class Record:
    name: str
    current: Digest | None
    next: Digest | None
    run_id: str | None

    def matches(self, digest: Digest) -> bool:
        return digest in (self.current, self.next)

    @property
    def expected(self) -> Digest | None:
        return self.current or self.next


def digest_of(path: Path) -> Digest:
    """The digest of one snapshot file; a Parquet file that cannot be read counts as -1 rows."""
    with open(path, "rb") as fh:
        sha = hashlib.file_digest(fh, "sha256").hexdigest()
    size = path.stat().st_size
    if ".parquet" in path.suffixes:
        try:
            rows = pl.scan_parquet(path).select(pl.len()).collect().item()
        except (pl.exceptions.PolarsError, OSError):
            rows = -1
    else:
        rows = path.read_bytes().count(b"\n")
    return Digest(int(rows), size, sha)


class SnapshotJournal:
    """The ledger's record of the snapshot's files (one snapshot per ledger)."""

    def __init__(self, ledger: SqlLedger, *, run_id: str | None = None) -> None:
        self.ledger = ledger
        self.run_id = run_id

    def intend(self, name: str, digest: Digest) -> None:
        """Before `name` is renamed into place: its new digest becomes the one it may also have."""
        self.ledger._execute(
            "INSERT INTO snapshot_files (name, next_rows, next_size, next_sha256, run_id, updated_at) "
            "VALUES (?,?,?,?,?,?) ON CONFLICT (name) DO UPDATE SET next_rows=excluded.next_rows, "
            "next_size=excluded.next_size, next_sha256=excluded.next_sha256, run_id=excluded.run_id, "
            "updated_at=excluded.updated_at",
            (name, digest.rows, digest.size, digest.sha256, self.run_id, time.time()),
        )

    def done(self, name: str) -> None:
        """After the rename: the new digest is the only one the file may have."""
        self.ledger._execute(
            "UPDATE snapshot_files SET rows=next_rows, size=next_size, sha256=next_sha256, next_rows=NULL, "
            "next_size=NULL, next_sha256=NULL, updated_at=? WHERE name=? AND next_sha256 IS NOT NULL",
            (time.time(), name),
        )

    def record_all(self, files: Iterable[tuple[str, Digest]]) -> None:
        """Replace the whole record (after a repair): exactly these files, with these digests."""
        with self.ledger._transaction():
            self.ledger._execute("DELETE FROM snapshot_files")
            for name, d in files:
                self.ledger._execute(
                    "INSERT INTO snapshot_files (name, rows, size, sha256, run_id, updated_at) VALUES (?,?,?,?,?,?)",
                    (name, d.rows, d.size, d.sha256, self.run_id, time.time()),
                )

    def records(self) -> dict[str, Record]:
        rows = self.ledger._execute(
            "SELECT name, rows, size, sha256, next_rows, next_size, next_sha256, run_id FROM snapshot_files"
        ).fetchall()
        return {
            r[0]: Record(r[0], Digest(r[1], r[2], r[3]) if r[3] else None,
                         Digest(r[4], r[5], r[6]) if r[6] else None, r[7])
            for r in rows
        }


def snapshot_files(root: Path) -> dict[str, Path]:
    """Data files of a snapshot folder by their name relative to it (`events.parquet`, `users/part-00001.parquet`)."""
    if not root.is_dir():
        return {}
    return {
        p.relative_to(root).as_posix(): p
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.endswith(TEMPORARY) and not p.name.startswith(".")
    }


def check_state(state: Path, ledger: SqlLedger) -> list[str]:
    """What is wrong with the state folder against the ledger: one phrase per damaged file, [] if intact.

    The snapshot against the ledger's record of it, and the ledger against the runs the folder holds
    (a plan the ledger does not know means the ledger was lost or replaced: its acknowledgements are gone).
    """
    known = {row[0]: row[1] for row in ledger._execute("SELECT run_id, status FROM runs").fetchall()}
    runs = Path(state) / "runs"
    strangers = sorted(p.parent.name for p in runs.glob("*/plan") if p.parent.name not in known) if runs.is_dir() else []
    problems = [f"runs/{run_id} has a plan the ledger does not know (the ledger was lost or replaced)"
                for run_id in strangers]
    problems += [f"the plan of unfinished run {run_id} (runs/{run_id}/plan) is gone"
                 for run_id, status in sorted(known.items())
                 if status in UNFINISHED and not (runs / run_id / "plan").is_dir() and _has_batches(ledger, run_id)]
    committed = sum(1 for status in known.values() if status == RunState.COMMITTED)
    return problems + check_snapshot(state, ledger, committed_runs=committed)


def check_snapshot(state: Path, ledger: SqlLedger, *, committed_runs: int | None = None) -> list[str]:
    """What is wrong with `state/snapshot` against the ledger's record: one phrase per damaged file, [] if
    intact. `committed_runs`: runs the ledger holds as committed (a snapshot with none recorded then is lost)."""
    root = Path(state) / "snapshot"
    records = SnapshotJournal(ledger).records()
    present = snapshot_files(root)
    problems = []
    for name, record in sorted(records.items()):
        expected = record.expected
        if name not in present:
            rows = f" ({expected.rows} rows)" if expected and expected.rows >= 0 else ""
            problems.append(f"snapshot/{name} is missing{rows}")
            continue
        digest = digest_of(present[name])
        if record.matches(digest):
            continue
        if digest.rows < 0:
            problems.append(f"snapshot/{name} is not a readable Parquet file")
        elif expected is not None and digest.rows != expected.rows:
            problems.append(f"snapshot/{name} has {digest.rows} rows where the ledger recorded {expected.rows}")
        else:
            problems.append(f"snapshot/{name} differs from the ledger's record (size or checksum)")
    for name in sorted(set(present) - set(records)):
        if records:
            problems.append(f"snapshot/{name} is not in the ledger's record")
    meta = present.get("meta.json")
    if meta is not None and "snapshot/meta.json" not in " ".join(problems):
        try:
            partitions = json.loads(meta.read_text())["partitions"]
            if not isinstance(partitions, int) or partitions < 1:
                raise ValueError
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            problems.append("snapshot/meta.json is not a valid record of the partition count")
    if not records and committed_runs:
        problems.extend(_unrecorded(root, present))
    return problems


def journal_for(state: Path, ledger: SqlLedger, run_id: str | None = None) -> SnapshotJournal:
    """The journal for a commit of `run_id`. A ledger without a record (a new state folder, or one older
    than the record) first records the snapshot as it stands: the baseline later checks compare with."""
    journal = SnapshotJournal(ledger, run_id=run_id)
    if not journal.records():
        journal.record_all((name, digest_of(path)) for name, path in snapshot_files(Path(state) / "snapshot").items())
    return journal


def require_intact(state: Path, ledger: SqlLedger) -> None:
    """Raise StateDamaged (one line: what is damaged, how to recover) unless the state folder matches the
    ledger. Call it before planning a run and before committing one."""
    problems = check_state(state, ledger)
    if problems:
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        raise StateDamaged(
            f"the state folder {state} is damaged: {shown}. Nothing was sent. Rebuild the snapshot from the "
            f"ledger and the committed plans with `braze-migrate repair --state {state}`, or restore the state "
            "folder from a backup"
        )


def _has_batches(ledger: SqlLedger, run_id: str) -> bool:
    """Whether the ledger holds batches of a run (a run still planning its first unit holds none)."""
    return ledger._execute("SELECT COUNT(*) FROM batches WHERE run_id=?", (run_id,)).fetchone()[0] > 0


def damaged_ledger(exc: BaseException) -> StateDamaged | None:
    """The StateDamaged a SQLite error means when the ledger file itself is corrupt, else None."""
    text = str(exc).lower()
    if "not a database" in text or "malformed" in text or "corrupt" in text:
        return StateDamaged(
            "the ledger (ledger.sqlite in the state folder) is corrupt: restore it from a backup; without it what "
            "Braze acknowledged is unknown, so nothing is sent (do not delete it to start over: every event and "
            "purchase would be sent again)"
        )
    return None


def _unrecorded(root: Path, present: dict[str, Path]) -> list[str]:
    """A ledger with committed runs and no record (a state folder older than the record): only a missing
    snapshot can be told apart."""
    return [] if present else [f"{root.name}/ is empty or missing although the ledger holds committed runs"]
