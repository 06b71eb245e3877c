"""The type contract kept in the snapshot (`types`): read for planning, extended at commit, relaxed on request.

The contract itself is `transforms/type_contract.py`; this module is where it meets the state folder.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import polars as pl

from connectors.state.integrity import journal_for
from connectors.state.ledger_base import LedgerBase
from connectors.state.snapshot import SCHEMAS, Snapshot
from transforms.type_contract import ACCEPTED, contract_of


def read_contract(snapshot: Snapshot) -> dict[str, str]:
    """attribute → acknowledged kind (or ACCEPTED for a change accepted for the next run)."""
    return dict(snapshot.scan("types").select("attribute", "kind").collect().iter_rows())


def extend_contract(snapshot: Snapshot, acked_users_next: pl.LazyFrame) -> None:
    """Add the kinds of the attributes Braze just acknowledged that have none (or an accepted change); the kind
    an attribute already has stays."""
    old = snapshot.scan("types").collect()
    columns = [c for c in acked_users_next.collect_schema().names() if c != "external_id"]
    if old.filter(pl.col("kind") == ACCEPTED).height == 0:
        # Nothing accepted for a change: only the attributes without a kind can gain one (a kind stays).
        columns = [c for c in columns if c not in set(old["attribute"].to_list())]
    new = contract_of(acked_users_next, columns).collect()
    if new.height == 0:
        return
    kept = old.filter(pl.col("kind") != ACCEPTED)
    added = new.join(kept, on="attribute", how="anti")
    if added.height == 0 and kept.height == old.height:
        return
    snapshot.replace("types", pl.concat([kept, added.cast(SCHEMAS["types"])]).sort("attribute"))


def accept_type_changes(state: Path, ledger: LedgerBase, names: Iterable[str]) -> list[str]:
    """Let these attributes take a new type: their contract waits for the type Braze acknowledges next.
    Returns the names that had a contract."""
    names = sorted(set(names))
    snapshot = Snapshot(Path(state), journal=journal_for(state, ledger))
    old = snapshot.scan("types").collect()
    hit = old.filter(pl.col("attribute").is_in(names) & (pl.col("kind") != ACCEPTED))
    if hit.height:
        snapshot.replace("types", old.with_columns(
            kind=pl.when(pl.col("attribute").is_in(names)).then(pl.lit(ACCEPTED)).otherwise(pl.col("kind"))))
    return hit["attribute"].to_list()
