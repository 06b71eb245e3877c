"""Small nightly exports and the `braze-migrate` command against the sandbox, for the tests of the paths between
features (tests/test_between_features.py) and the model of whole nights (tests/model/)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from tests.conftest import API_KEY

DOCUMENTED_EXITS = {0, 1, 2, 3, 4, 5, 6}  # braze_migrate/cli/exits.py


def env(sandbox, tmp_path: Path, **extra: str) -> dict:
    return {**os.environ, "BRAZE_REST_ENDPOINT": sandbox.url, "BRAZE_API_KEY": API_KEY,
            "PREFECT_HOME": str(tmp_path / "prefect"), **extra}


def cli(*args, env: dict, timeout: float = 300, preexec_fn=None) -> subprocess.CompletedProcess:
    """`braze-migrate ARGS` in a subprocess; never a traceback, always a documented exit code."""
    done = subprocess.run([sys.executable, "-m", "braze_migrate.cli.main", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=timeout, check=False, preexec_fn=preexec_fn)
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.returncode in DOCUMENTED_EXITS, (done.returncode, done.stderr[-2000:])
    return done


def run(kind: str, src: Path, state: Path, env: dict, *flags: str, **kw) -> tuple[int, dict, str]:
    """A load run with --json: (exit code, summary, stderr)."""
    done = cli(kind, src, "--state", state, "--no-prefect", "--json", *flags, env=env, **kw)
    out = done.stdout.strip().splitlines()
    return done.returncode, (json.loads(out[-1]) if out and out[-1].startswith("{") else {}), done.stderr


def last_line(stderr: str) -> str:
    """The command's last stderr line (progress lines start with `[braze-migrate]`)."""
    lines = [ln for ln in stderr.strip().splitlines() if not ln.startswith("[braze-migrate]")]
    return lines[-1] if lines else ""


def write_night(folder: Path, users: dict[str, dict] | None = None, events: list[dict] | None = None,
                purchases: list[dict] | None = None, deletes: list[str] | None = None) -> Path:
    """One night's export folder: users.ndjson (attributes as given, nested values kept), events.csv,
    purchases.csv, user_deletes.csv; a dataset left None is absent."""
    folder.mkdir(parents=True, exist_ok=True)
    if users is not None:
        with open(folder / "users.ndjson", "w") as fh:
            fh.writelines(json.dumps({"external_id": eid, **attrs}) + "\n" for eid, attrs in users.items())
    if events is not None:
        pl.DataFrame(events, schema={"event_id": pl.Utf8, "external_id": pl.Utf8, "name": pl.Utf8,
                                     "time": pl.Utf8}).write_csv(folder / "events.csv")
    if purchases is not None:
        pl.DataFrame(purchases, schema={"purchase_id": pl.Utf8, "external_id": pl.Utf8, "product_id": pl.Utf8,
                                        "currency": pl.Utf8, "price": pl.Float64, "time": pl.Utf8}
                     ).write_csv(folder / "purchases.csv")
    if deletes is not None:
        pl.DataFrame({"external_id": deletes}, schema={"external_id": pl.Utf8}).write_csv(folder / "user_deletes.csv")
    return folder


# Recent times: Braze's read-back aggregates (settle --check) cover the last 90 days only.
DAY = (datetime.now(UTC) - timedelta(days=2)).strftime("%Y-%m-%d")


def event(i: int, eid: str) -> dict:
    return {"event_id": f"e{i}", "external_id": eid, "name": "opened",
            "time": f"{DAY}T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z"}


def purchase(i: int, eid: str) -> dict:
    return {"purchase_id": f"p{i}", "external_id": eid, "product_id": "sku", "currency": "USD", "price": 1.5,
            "time": f"{DAY}T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z"}


def known(sandbox) -> dict[str, dict]:
    """The sandbox's profiles by external_id."""
    return {p["external_id"]: p for p in sandbox.profiles().values() if p.get("external_id")}
