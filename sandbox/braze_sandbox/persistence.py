"""Optional SQLite persistence (`--db PATH`) so a sandbox survives a restart.

Write-behind: the store reports changed profiles and new occurrences to this journal; every
`flush_interval_s` the event loop serializes them and a writer thread commits them in one
transaction, so request handling never waits on the disk. Stopping the server flushes everything.
A crash can lose at most the last interval, which a test sandbox can afford.
"""

from __future__ import annotations

import queue
import sqlite3
import threading

import orjson

from braze_sandbox.stats import Stats
from braze_sandbox.store import Profile, Store

SCHEMA = """
CREATE TABLE IF NOT EXISTS profiles (braze_id TEXT PRIMARY KEY, doc BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS occurrences (
    id INTEGER PRIMARY KEY, kind TEXT NOT NULL, braze_id TEXT NOT NULL, doc BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS occurrences_by_profile ON occurrences (braze_id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
"""


def _connect(path: str) -> sqlite3.Connection:
    connection = sqlite3.connect(path, timeout=30)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.executescript(SCHEMA)
    return connection


class Journal:
    """Collects changes on the loop thread; a writer thread commits them to SQLite."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.dirty: dict[str, Profile] = {}
        self.pending: list[tuple[str, str, dict]] = []
        self.queue: queue.Queue = queue.Queue()
        self.writer = threading.Thread(target=self._write_loop, name="sandbox-sqlite", daemon=True)

    def open(self, store: Store, stats: Stats) -> None:
        """Fill an empty store and the counters from the database, then start the writer."""
        connection = _connect(self.path)
        try:
            profiles = {}
            for braze_id, doc in connection.execute("SELECT braze_id, doc FROM profiles"):
                profiles[braze_id] = Profile.from_dict(orjson.loads(doc))
            for kind, braze_id, doc in connection.execute(
                "SELECT kind, braze_id, doc FROM occurrences ORDER BY id"
            ):
                if braze_id in profiles:
                    getattr(profiles[braze_id], kind).append(orjson.loads(doc))
            meta = dict(connection.execute("SELECT key, value FROM meta"))
        finally:
            connection.close()
        for profile in profiles.values():
            store.load(profile)
        if "stats" in meta:
            stats.load(orjson.loads(meta["stats"]))
        if "next_id" in meta:
            store.next_id = max(store.next_id, int(meta["next_id"]))
        self.writer.start()

    def profile_changed(self, profile: Profile) -> None:
        self.dirty[profile.braze_id] = profile

    def occurrence(self, kind: str, profile: Profile, record: dict) -> None:
        self.pending.append((kind, profile.braze_id, record))

    def replaced(self, profile: Profile) -> None:
        """A test hook rewrote a profile's occurrences: store them anew."""
        self._forget_pending(profile.braze_id)
        self.queue.put(("forget_occurrences", profile.braze_id))
        for kind in ("events", "purchases"):
            for record in getattr(profile, kind):
                self.pending.append((kind, profile.braze_id, record))
        self.profile_changed(profile)

    def deleted(self, braze_id: str) -> None:
        self._forget_pending(braze_id)
        self.queue.put(("delete", braze_id))

    def _forget_pending(self, braze_id: str) -> None:
        self.dirty.pop(braze_id, None)
        self.pending = [p for p in self.pending if p[1] != braze_id]

    def cleared(self) -> None:
        self.dirty.clear()
        self.pending.clear()
        self.queue.put(("clear",))

    def flush(self, store: Store, stats: Stats) -> None:
        """Hand the changes since the last flush to the writer (runs on the loop thread)."""
        if not self.dirty and not self.pending:
            return
        rows = [(bid, orjson.dumps(p.to_dict(with_occurrences=False))) for bid, p in self.dirty.items()]
        occurrences = [(kind, bid, orjson.dumps(record)) for kind, bid, record in self.pending]
        meta = [("stats", orjson.dumps(stats.to_dict())), ("next_id", str(store.next_id).encode())]
        self.dirty, self.pending = {}, []
        self.queue.put(("write", rows, occurrences, meta))

    def close(self, store: Store, stats: Stats) -> None:
        """Flush, write the final counters, and wait for the writer to finish."""
        self.flush(store, stats)
        meta = [("stats", orjson.dumps(stats.to_dict())), ("next_id", str(store.next_id).encode())]
        self.queue.put(("write", [], [], meta))
        self.queue.put(None)
        self.writer.join()

    def _write_loop(self) -> None:
        connection = _connect(self.path)
        try:
            while (item := self.queue.get()) is not None:
                with connection:
                    self._apply(connection, item)
        finally:
            connection.close()

    @staticmethod
    def _apply(connection: sqlite3.Connection, item: tuple) -> None:
        kind = item[0]
        if kind == "write":
            _, rows, occurrences, meta = item
            connection.executemany("INSERT OR REPLACE INTO profiles VALUES (?, ?)", rows)
            connection.executemany(
                "INSERT INTO occurrences (kind, braze_id, doc) VALUES (?, ?, ?)", occurrences
            )
            connection.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", meta)
        elif kind == "delete":
            connection.execute("DELETE FROM profiles WHERE braze_id = ?", (item[1],))
            connection.execute("DELETE FROM occurrences WHERE braze_id = ?", (item[1],))
        elif kind == "forget_occurrences":
            connection.execute("DELETE FROM occurrences WHERE braze_id = ?", (item[1],))
        elif kind == "clear":
            for table in ("profiles", "occurrences", "meta"):
                connection.execute(f"DELETE FROM {table}")
