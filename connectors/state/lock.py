"""One run per state folder: a second run (sync, backfill, verify's writes) is refused at once, naming the
run that holds the folder.

The holder takes an exclusive `flock` on `STATE/run.lock` and, with a PostgreSQL ledger, a session advisory
lock in the ledger's database (workers on other machines share that one, not the file). Both belong to the
holder's process or connection, so the kernel or the server drops them the moment the holder dies, even by
`kill -9`: a stale lock is never waited on, and the next run finds the last holder's record and says so.
Workers joining a run (`load-worker`) do not take the lock: they help the holder, they do not compete.
Re-entrant within a process (the CLI and the flow it runs share one lock).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from connectors.state.ledger_base import LedgerUnavailable

LOCK_FILE = "run.lock"
PROBE_RETRIES, PROBE_WAIT_S = 5, 0.05  # a run holds the lock for its whole life; a `status` probe for microseconds
# Server-side keepalives on the lock's connection: a holder whose machine vanished (no FIN, no RST) lets
# go of the advisory lock within about a minute instead of the system default of two hours.
PG_KEEPALIVE = {"tcp_keepalives_idle": 15, "tcp_keepalives_interval": 5, "tcp_keepalives_count": 4}


class StateInUse(Exception):
    """Another run holds the state folder: one line naming it and what to do (the CLI prints it, exit 2)."""


@dataclass
class Holder:
    """Who holds a state folder: shown to whoever is refused."""

    command: str
    pid: int = field(default_factory=os.getpid)
    host: str = field(default_factory=socket.gethostname)
    since: float = field(default_factory=time.time)
    run_id: str | None = None

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.since))
        run = f"run {self.run_id}" if self.run_id else "a run being planned"
        return f"{run} ({self.command}, pid {self.pid} on {self.host}, since {when})"

    @classmethod
    def parse(cls, text: str) -> Holder | None:
        try:
            data = json.loads(text)
            return cls(**{k: data[k] for k in ("command", "pid", "host", "since", "run_id")})
        except (ValueError, KeyError, TypeError):
            return None


class RunLock:
    """The held lock of one state folder. `name_run(run_id)` records the run once it has an id."""

    def __init__(self, state: Path, holder: Holder, fd: int, pg=None, stale: Holder | None = None):
        self.state = state
        self.holder = holder
        self.stale = stale  # the record a killed holder left behind, if any
        self._fd = fd
        self._pg = pg

    def name_run(self, run_id: str) -> None:
        self.holder.run_id = run_id
        self._write()

    def _write(self) -> None:
        text = json.dumps(self.holder.__dict__).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, text, 0)
        os.fsync(self._fd)
        if self._pg is not None:
            self._pg.execute("UPDATE braze_migrate_run_lock SET holder=%s WHERE lock_key=%s",
                             (text.decode(), _PG_KEY))

    def release(self) -> None:
        """Clear the record (a clean exit leaves none), then let go."""
        try:
            if self._pg is not None:
                try:
                    self._pg.execute("DELETE FROM braze_migrate_run_lock WHERE lock_key=%s", (_PG_KEY,))
                    self._pg.execute("SELECT pg_advisory_unlock_all()")  # this connection holds only the run's lock
                finally:
                    self._pg.close()
            os.ftruncate(self._fd, 0)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)


_PG_KEY = "braze_migrate.run"


def _advisory_key(schema: str | None) -> str:
    """The advisory lock's name: one per ledger schema (advisory locks span the whole database, and two state
    folders whose ledgers live in two schemas of one database are two states, not one)."""
    return f"{_PG_KEY}:{schema}" if schema else _PG_KEY
_held: dict[str, tuple[RunLock, int]] = {}
_held_guard = threading.Lock()


@contextmanager
def run_lock(state: Path, command: str, *, ledger_url: str | None = None) -> Iterator[RunLock]:
    """Hold the state folder for one run (re-entrant in this process); StateInUse if another run holds it."""
    key = str(Path(state).resolve())
    with _held_guard:
        if key in _held:
            lock, depth = _held[key]
            _held[key] = (lock, depth + 1)
        else:
            lock = _acquire(Path(state), command, ledger_url)
            _held[key] = (lock, 1)
    try:
        yield lock
    finally:
        with _held_guard:
            lock, depth = _held[key]
            if depth > 1:
                _held[key] = (lock, depth - 1)
            else:
                del _held[key]
                lock.release()


def current_holder(state: Path) -> Holder | None:
    """The holder recorded in the state folder, if a live process holds it (for `status`)."""
    path = Path(state) / LOCK_FILE
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return Holder.parse(os.pread(fd, 4096, 0).decode(errors="replace")) or Holder("unknown command")
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _acquire(state: Path, command: str, ledger_url: str | None) -> RunLock:
    state.mkdir(parents=True, exist_ok=True)
    fd = os.open(state / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    for attempt in range(PROBE_RETRIES + 1):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if attempt < PROBE_RETRIES:  # `status` may be peeking (a shared lock held for microseconds)
                time.sleep(PROBE_WAIT_S)
                continue
            text = os.pread(fd, 4096, 0).decode(errors="replace")
            os.close(fd)
            raise _refusal(state, Holder.parse(text)) from None
    stale = Holder.parse(os.pread(fd, 4096, 0).decode(errors="replace"))
    holder = Holder(command)
    pg = None
    try:
        if ledger_url:
            pg, pg_stale = _acquire_pg(state, ledger_url)
            stale = stale or pg_stale
        lock = RunLock(state, holder, fd, pg, stale)
        if pg is not None:
            pg.execute("INSERT INTO braze_migrate_run_lock (lock_key, holder) VALUES (%s, %s) "
                       "ON CONFLICT (lock_key) DO UPDATE SET holder=excluded.holder",
                       (_PG_KEY, json.dumps(holder.__dict__)))
        lock._write()
        return lock
    except BaseException:
        if pg is not None:
            pg.close()
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
        raise


def _acquire_pg(state: Path, url: str):
    """The advisory lock of the ledger database (its schema, when the URL names one)."""
    import psycopg
    from psycopg import sql

    from connectors.state.ledger_pg import _first_line, redact_url, split_schema

    conninfo, schema = split_schema(url)
    try:
        conn = psycopg.connect(conninfo, autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        raise LedgerUnavailable(f"cannot connect to the ledger database {redact_url(url)}: {_first_line(exc, url)}") \
            from None
    try:
        for name, value in PG_KEEPALIVE.items():
            conn.execute(sql.SQL("SET {} TO {}").format(sql.Identifier(name), sql.Literal(value)))
        if schema:
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        conn.execute("CREATE TABLE IF NOT EXISTS braze_migrate_run_lock (lock_key TEXT PRIMARY KEY, holder TEXT)")
        got = conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (_advisory_key(schema),)).fetchone()[0]
        row = conn.execute("SELECT holder FROM braze_migrate_run_lock WHERE lock_key=%s", (_PG_KEY,)).fetchone()
        recorded = Holder.parse(row[0]) if row and row[0] else None
        if not got:
            raise _refusal(state, recorded)
        return conn, recorded
    except BaseException:
        conn.close()
        raise


def _refusal(state: Path, holder: Holder | None) -> StateInUse:
    who = holder.describe() if holder else "another run (starting)"
    return StateInUse(
        f"state folder {state} is in use by {who}: one run per state folder; wait for it to finish "
        f"(`braze-migrate status --state {state}`), or help it with `braze-migrate load-worker --state {state}`"
    )
