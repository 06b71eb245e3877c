"""Tombstones: users Braze deleted on behalf of `user_deletes` stay deleted for good (`deleted_users`, written
by connectors/state/deletes.py). Only `braze-migrate undelete ID...` lifts a tombstone, and each lift is
logged in `undeletes` (which id, the run that deleted it, when, by whom)."""

from __future__ import annotations

import getpass
import time
from collections.abc import Iterable

from connectors.state.sqlbase import SqlBackend


class TombstoneOps(SqlBackend):
    """Typed operations on lifted tombstones (a part of `LedgerBase`)."""

    def lift_tombstones(self, ids: Iterable[str], *, by_whom: str | None = None,
                        now: float | None = None) -> tuple[list[str], list[str]]:
        """Lift the tombstones of `ids`, logging each; returns (lifted, ids without a tombstone)."""
        now = time.time() if now is None else now
        who = by_whom or _who()
        lifted, unknown = [], []
        with self._transaction():
            for eid in dict.fromkeys(ids):
                row = self._execute("SELECT run_id, deleted_at FROM deleted_users WHERE external_id=?",
                                    (eid,)).fetchone()
                if row is None:
                    unknown.append(eid)
                    continue
                self._execute("INSERT INTO undeletes (external_id, run_id, deleted_at, undeleted_at, by_whom) "
                              "VALUES (?,?,?,?,?)", (eid, row[0], row[1], now, who))
                self._execute("DELETE FROM deleted_users WHERE external_id=?", (eid,))
                lifted.append(eid)
        return lifted, unknown

    def lifted_since(self, at: float) -> bool:
        """Some tombstone was lifted after `at` (an export loaded before then is no longer "unchanged")."""
        row = self._execute("SELECT COUNT(*) FROM undeletes WHERE undeleted_at > ?", (at,)).fetchone()
        return bool(row and row[0])

    def undelete_log(self) -> list[dict]:
        """Every lifted tombstone, oldest first."""
        rows = self._execute("SELECT external_id, run_id, deleted_at, undeleted_at, by_whom FROM undeletes "
                             "ORDER BY undeleted_at").fetchall()
        return [dict(zip(("external_id", "run_id", "deleted_at", "undeleted_at", "by_whom"), r, strict=True))
                for r in rows]


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
