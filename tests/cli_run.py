"""Running the installed `braze-migrate` command from tests, and reading a state folder's ledger from outside."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent / "braze-migrate"


def run_cli(*args, env=None, timeout=300) -> subprocess.CompletedProcess:
    """The command with these arguments; whatever it ends with, it must not end in a Python traceback."""
    done = subprocess.run([str(BIN), *map(str, args)], env=env or os.environ, capture_output=True, text=True,
                          timeout=timeout, check=False)
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    return done


def acknowledged_batches(state: Path) -> int:
    """Acknowledged batches in a state folder's SQLite ledger, read-only (0 while it does not exist yet)."""
    db = state / "ledger.sqlite"
    if not db.exists():
        return 0
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            return con.execute("SELECT COUNT(*) FROM batches WHERE status='acknowledged'").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0
