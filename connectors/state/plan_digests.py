"""Digests of the plan files `repair` replays, recorded in the ledger when a run's plan is committed.

A committed run's `objects/` and `users_next/` are all `repair` has to rebuild what that run acknowledged. A
file gone or changed since would make the rebuilt snapshot forget acknowledged ids, so the next sync would
resend them: `repair` checks every file against its recorded digest first, and rebuilds nothing if one differs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from connectors.state.sqlbase import SqlBackend

MARKER = "."  # one row per recorded run, so a plan that had no file to replay is told from an unrecorded one
REPLAYED = ("objects/*.parquet", "users_next/*.parquet")  # what braze_migrate/commit/committer.py replays


class PlanFileOps(SqlBackend):
    """Typed operations on plan file digests (a part of `LedgerBase`)."""

    def record_plan_files(self, run_id: str, rows: Iterable[tuple[str, int, str]]) -> None:
        """(path in the plan, size, sha256) of every replayed file of a run, replacing what was recorded."""
        with self._transaction():
            self._execute("DELETE FROM plan_files WHERE run_id=?", (run_id,))
            self._executemany("INSERT INTO plan_files (run_id, path, size, sha256) VALUES (?,?,?,?)",
                              [(run_id, *row) for row in rows])

    def plan_files(self, run_id: str) -> dict[str, tuple[int, str]]:
        rows = self._execute("SELECT path, size, sha256 FROM plan_files WHERE run_id=?", (run_id,)).fetchall()
        return {path: (int(size), sha) for path, size, sha in rows}


def replayed_files(plan_dir: Path) -> list[Path]:
    return sorted(p for pattern in REPLAYED for p in Path(plan_dir).glob(pattern))


def _digest(path: Path) -> tuple[int, str]:
    with open(path, "rb") as fh:
        return path.stat().st_size, hashlib.file_digest(fh, "sha256").hexdigest()


def record(ledger: PlanFileOps, run_id: str, plan_dir: Path) -> int:
    """Record the digest of every replayed file of a complete plan (again on a resumed commit: same files)."""
    rows = [(MARKER, 0, ""), *((str(p.relative_to(plan_dir)), *_digest(p)) for p in replayed_files(plan_dir))]
    ledger.record_plan_files(run_id, rows)
    return len(rows) - 1


def problems(ledger: PlanFileOps, run_id: str, plan_dir: Path) -> list[str]:
    """Every replayed file of the run that is missing, changed or unknown (one text each, naming it); empty when
    the plan is exactly what was committed, or when nothing was recorded (a run committed by an older release)."""
    known = ledger.plan_files(run_id)
    out = []
    for rel, (size, sha) in sorted(known.items()):
        if rel == MARKER:
            continue
        path = Path(plan_dir) / rel
        if not path.is_file():
            out.append(f"{path} is missing")
        elif _digest(path) != (size, sha):
            out.append(f"{path} changed since it was committed")
    if known:
        out += [f"{p} was not part of the committed plan" for p in replayed_files(plan_dir)
                if str(p.relative_to(plan_dir)) not in known]
    return out
