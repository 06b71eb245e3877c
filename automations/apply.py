"""Create or replace the alert automations of `automations/*.yaml` on the Prefect server (`PREFECT_API_URL`).

An automation's notification needs a block's id, which only exists on a server, so the files say
`block_document_id: NOTIFY` and this command fills it in: with `--webhook-url` it saves a custom-webhook block
(the URL, often a secret such as a Slack hook, is kept in the block's secret values and never shown), with
`--block TYPE/NAME` it uses a notification block you already have. Automations are matched by name and replaced,
so applying twice leaves one of each.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
from pathlib import Path
from uuid import UUID

import yaml

FOLDER = Path(__file__).resolve().parent
PLACEHOLDER = "NOTIFY"
WEBHOOK_BLOCK = "braze-migrate-alerts"
WEBHOOK_ENV = "BRAZE_MIGRATE_ALERT_WEBHOOK_URL"


def load_specs(files: list[Path] | None = None) -> list[dict]:
    """Every automation of the files (default: all `automations/*.yaml`), as plain dicts."""
    specs = []
    for path in files or sorted(FOLDER.glob("*.yaml")):
        data = yaml.safe_load(Path(path).read_text()) or {}
        specs += data.get("automations", [data] if "trigger" in data else [])
    return specs


def with_block(spec: dict, block_id: UUID) -> dict:
    """The spec with its notification actions pointed at `block_id`."""
    out = copy.deepcopy(spec)
    for action in out.get("actions", []):
        if action.get("block_document_id") == PLACEHOLDER:
            action["block_document_id"] = str(block_id)
    return out


def webhook_block(url: str, name: str = WEBHOOK_BLOCK) -> UUID:
    """Save (or overwrite) a custom-webhook notification block posting `{"subject", "body"}` as JSON to `url`."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    block = CustomWebhookNotificationBlock(
        name=name, url="{{alert_url}}", method="POST", secrets={"alert_url": url},
        json_data={"subject": "{{subject}}", "body": "{{body}}", "source": "{{name}}"},
    )
    return block.save(name, overwrite=True)


def existing_block(slug: str) -> UUID:
    """The id of a saved notification block named `TYPE/NAME` (e.g. `slack-webhook/ops-alerts`)."""
    from prefect.blocks.core import Block

    return Block.load(slug)._block_document_id


def apply(specs: list[dict], block_id: UUID) -> list[UUID]:
    """Replace each automation of the same name by the spec (pointed at the block); returns the new ids."""
    from prefect.client.orchestration import get_client
    from prefect.events.schemas.automations import AutomationCore

    ids = []
    with get_client(sync_client=True) as client:
        for spec in specs:
            automation = AutomationCore.model_validate(with_block(spec, block_id))
            for old in client.read_automations_by_name(automation.name):
                client.delete_automation(old.id)
            ids.append(client.create_automation(automation))
    return ids


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m automations", description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--webhook-url", help=f"post alerts as JSON to this URL (or set {WEBHOOK_ENV})")
    where.add_argument("--block", metavar="TYPE/NAME", help="use this saved notification block instead")
    parser.add_argument("--file", type=Path, action="append", help="only this file (repeatable)")
    args = parser.parse_args(argv)
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        print("automations: PREFECT_API_URL is not set: export PREFECT_API_URL=http://127.0.0.1:4200/api "
              "(the server the deployments run on)", file=sys.stderr)
        return 2
    url = args.webhook_url or os.environ.get(WEBHOOK_ENV)
    if not url and not args.block:
        print(f"automations: say where alerts go: --webhook-url URL (or {WEBHOOK_ENV}), or --block TYPE/NAME",
              file=sys.stderr)
        return 2
    try:
        block_id = existing_block(args.block) if args.block else webhook_block(url)
    except ValueError as exc:
        print(f"automations: notification block {args.block!r} not found: {str(exc).splitlines()[0]}",
              file=sys.stderr)
        return 2
    specs = load_specs(args.file)
    apply(specs, block_id)
    target = f"block {args.block}" if args.block else f"webhook block {WEBHOOK_BLOCK}"
    for spec in specs:
        print(f"applied: {spec['name']} → {target}")
    return 0
