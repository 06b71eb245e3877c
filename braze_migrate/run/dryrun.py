"""`braze-migrate plan`: what a run would send and cost, with the payloads written out; nothing is sent."""

from __future__ import annotations

import json
import math
import time
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from braze_migrate import progress
from braze_migrate.ops import catalogs
from braze_migrate.plan import guards
from braze_migrate.plan.checks import write_rules
from braze_migrate.plan.planner import build_plan, object_files, scan_batches
from braze_migrate.run import user_model
from braze_migrate.run.identities import identities_preview
from braze_migrate.settings import LoadSettings
from connectors.state.private import open_private
from connectors.state.snapshot import Snapshot
from connectors.states import Outcome

UNCHANGED = Outcome.UNCHANGED.value  # the plan's count of rows found unchanged


def _require_intact(settings: LoadSettings, state: Path) -> None:
    """A damaged snapshot would price a full resend: the dry run stops like a run would (exit 5)."""
    if settings.ledger_url is None and not (state / "ledger.sqlite").exists():
        return  # no run yet: nothing to compare with
    from braze_migrate.run.engine import open_run_ledger
    from connectors.state.integrity import require_intact

    ledger = open_run_ledger(settings)
    try:
        require_intact(state, ledger)
    finally:
        ledger.close()


def dry_run(settings: LoadSettings, source: str, *, out: str | None = None, mapping: str | None = None) -> dict:
    """Plan against the state folder's snapshot without touching the ledger; returns the cost per dataset."""
    state = open_private(Path(settings.state))  # payloads hold personal data: 0700/0600
    _require_intact(settings, state)
    plan_dir = Path(out) if out else state / "plans" / time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    write_rules(plan_dir, settings, datetime.now(UTC).date())  # as a run would plan (suspicious rows, orders)
    info = build_plan(source, Snapshot(state), plan_dir, batch_size=settings.batch_size,
                      batch_mode=settings.batch_mode, resend_in_doubt=settings.in_doubt == "resend",
                      users_per_partition=settings.users_per_partition, mapping=mapping,
                      on_progress=progress.fan_out())
    files = object_files(plan_dir)
    objects = pl.concat([pl.read_parquet(f) for f in files]) if files else pl.DataFrame(
        schema={"dataset": pl.Utf8, "data_points": pl.Int64})
    kept = pl.read_parquet(plan_dir / "kept.parquet")
    rejects = pl.read_parquet(plan_dir / "rejects.parquet")
    per = {}
    for name, read in info.stats["read"].items():
        o = objects.filter(pl.col("dataset") == name)
        k = kept.filter(pl.col("dataset") == name)
        r = rejects.filter((pl.col("dataset") == name) & pl.col("column").is_null())
        per[name] = {
            "read": read,
            "to_send": o.height,
            "data_points": int(o["data_points"].sum() or 0),
            UNCHANGED: info.stats[UNCHANGED].get(name, 0),
            "held": k.height,
            "rejected_rows": r.select("file", "row").unique().height,
            "rejected_cells": rejects.filter((pl.col("dataset") == name) & pl.col("column").is_not_null()).height,
        }
    model = user_model.empty_breakdown()  # nested objects, arrays of objects, groups (braze_migrate/run/user_model.py)
    with (plan_dir / "payloads.ndjson").open("w") as fh:
        for batch_no, body in scan_batches(plan_dir, ["batch_no", "body"]).collect().sort("batch_no").iter_rows():
            doc = json.loads(body)
            user_model.add_body(model, doc)
            fh.write(json.dumps({"batch_no": batch_no, "body": doc}) + "\n")
    full = info.stats["full_resend"]
    return {
        "source": source,
        "plan_dir": str(plan_dir),
        "payloads": str(plan_dir / "payloads.ndjson"),
        "requests": info.batches,
        "objects": info.objects,
        "data_points": info.data_points,
        "full_resend": {"requests": math.ceil(full["objects"] / max(1, settings.batch_size)),
                        "data_points": full["data_points"]},
        "datasets": per,
        "user_model": model,
        "deletes": user_model.deletes_preview(source, mapping, state, plan_dir / "deletes-work", settings),
        "catalogs": catalogs.preview(source, mapping, state, plan_dir, catalogs.CatalogSettings.of(settings)),
        "identities": identities_preview(source, mapping, plan_dir / "identities-work", settings),
        "guards": guards.dry_run_report(state, plan_dir, settings).to_dict(),  # what a run would hold on
    }
