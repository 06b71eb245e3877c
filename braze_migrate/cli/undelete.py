"""`braze-migrate undelete ID...`: lift the tombstones of users deleted on behalf of `user_deletes`, so a later
export loads them again. Erasure is otherwise permanent: their rows are rejected in every later export. Each
lift is logged in the ledger (who, when, which id) and printed; nothing is sent to Braze here."""

from __future__ import annotations

import argparse
import json

from braze_migrate.cli.exits import EXIT_CONFIG, EXIT_OK
from braze_migrate.cli.options import add_option_flags, holding_state, settings_from_args
from braze_migrate.ops.deletes import undelete


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("undelete", help="let deleted users be loaded again (lifts their tombstones, logged)")
    p.add_argument("ids", nargs="+", metavar="ID", help="external_id of a user deleted through user_deletes")
    add_option_flags(p, "undelete")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    return p


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args, "undelete")
    with holding_state(settings, "undelete") as (state, ledger):
        lifted, unknown = undelete(state, ledger, list(args.ids))
    if args.json:
        print(json.dumps({"undeleted": lifted, "not_deleted": unknown}, sort_keys=True))
    else:
        for eid in lifted:
            print(f"undeleted {eid}: its rows in the next export are loaded again (logged in the ledger; remove it "
                  "from user_deletes too, or the next run deletes it again)")
        for eid in unknown:
            print(f"{eid}: no tombstone (never deleted through user_deletes, or already undeleted)")
    return EXIT_OK if lifted or not unknown else EXIT_CONFIG
