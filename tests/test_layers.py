"""The import contracts (pyproject.toml, tool.importlinter): transforms → connectors → core → flows → cli; the
flows and the CLI reach plan, load, commit and the ledger's backends only through braze_migrate.run; and no
import cycle between sibling modules. `make test` fails the moment a core module imports a flow or
the CLI, or a cycle comes back."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_import_contracts_are_kept():
    lint = Path(sys.executable).parent / "lint-imports"
    done = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "5 kept, 0 broken" in done.stdout
