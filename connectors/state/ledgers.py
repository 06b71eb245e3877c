"""`open_ledger`: the ledger a run's settings name, PostgreSQL or SQLite; the one module that knows both."""

from __future__ import annotations

from pathlib import Path

from connectors.state.ledger import Ledger
from connectors.state.ledger_base import LedgerBase


def open_ledger(state: Path, url: str | None = None) -> LedgerBase:
    """PostgreSQL when `url` is a postgresql:// URL, else the SQLite ledger inside the state folder."""
    if url:
        from connectors.state.ledger_pg import PgLedger, is_postgres_url

        if not is_postgres_url(url):
            raise ValueError("the ledger URL must start with postgresql:// (or postgres://)")
        return PgLedger(url)
    return Ledger(Path(state) / "ledger.sqlite")
