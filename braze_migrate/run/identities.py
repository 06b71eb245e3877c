"""What identifies the users of a run, as `braze-migrate plan` shows it: per dataset, the rows named by
external_id, user alias, email or phone, the rows without any, and the rows carrying several identifiers (the
precedence of docs/identity.md chose one); whether alias objects may create their user."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from connectors.sources import open_source, reading
from transforms import identity
from transforms.normalize import external_id_text

DATASETS = ("users", "events", "purchases", "push_tokens", "user_deletes")


def identities_preview(source: str, mapping: str | None, work_dir: Path, settings: Any) -> dict:
    """Counts per dataset (nothing is recorded or sent)."""
    out: dict = {"create_alias_users": bool(settings.create_alias_users), "datasets": {}}
    for name, ds in open_source(source, mapping=mapping, work_dir=work_dir).items():
        if name not in DATASETS:
            continue
        with reading(ds):
            schema = ds.frame.collect_schema()
            row = ds.frame.select(identity.census(schema, external_id_text(ds.frame))).collect().row(0, named=True)
        out["datasets"][name] = {k: int(v or 0) for k, v in row.items()}
    return out

