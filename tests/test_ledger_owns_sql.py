"""The ledger owns every table and statement: no SQL and no private ledger call outside connectors/state/.

A module that needs something of the ledger asks for a typed operation of `LedgerBase` (connectors/state/),
so a new backend implements exactly what it can see."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ("braze_migrate", "flows", "connectors", "transforms", "bench", "automations", "scripts")
OWNER = ROOT / "connectors" / "state"
SQL = re.compile(r"\b(SELECT\s+[\w*(]|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|CREATE\s+(TABLE|INDEX|SCHEMA)"
                 r"|ALTER\s+TABLE|DROP\s+(TABLE|INDEX))")
PRIVATE = {"_execute", "_executemany", "_transaction", "_tables", "_columns", "_migrate", "_lock_schema"}
# Modules whose SQL is not the ledger's, with the reason (private ledger calls stay forbidden there too).
NOT_LEDGER_SQL = {
    "connectors/sql.py": "queries the user's warehouse to spool SQL datasets to Parquet",
    "bench/sql_source.py": "fills and queries a PostgreSQL warehouse table to measure the SQL source",
}


def product_modules():
    for top in PRODUCT:
        for path in sorted((ROOT / top).rglob("*.py")):
            if OWNER not in path.parents:
                yield path


def offences(path: Path, root: Path = ROOT) -> list[str]:
    rel = path.relative_to(root).as_posix()
    found = []
    for node in ast.walk(ast.parse(path.read_text(), rel)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.search(node.value):
            if rel not in NOT_LEDGER_SQL:
                found.append(f"{rel}:{node.lineno}: SQL {node.value[:60]!r}")
        elif isinstance(node, ast.Attribute) and node.attr in PRIVATE:
            found.append(f"{rel}:{node.lineno}: private ledger call .{node.attr}")
        elif isinstance(node, ast.Attribute) and node.attr == "execute" and isinstance(node.value, ast.Attribute) \
                and node.value.attr == "db":
            found.append(f"{rel}:{node.lineno}: the ledger's connection used directly")
    return found


def test_no_sql_outside_the_ledger():
    found = [line for path in product_modules() for line in offences(path)]
    assert not found, "\n".join(found)


def test_the_scan_finds_sql_and_private_calls(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text('ledger._execute("SELECT 1")\nx = "UPDATE batches SET status=?"\nengine.ledger.db.execute(q)\n')
    got = offences(bad, tmp_path)
    assert len(got) == 4, got
