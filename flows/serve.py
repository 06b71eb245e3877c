"""`python -m flows.serve`: run the deployments of prefect.yaml from this process, without a work pool.

The deployments are built from prefect.yaml itself (names, schedules with their time zone, parameters,
concurrency limits), so the serve path and the work-pool path cannot drift apart. Serving needs a
persistent Prefect server (`PREFECT_API_URL`); schedules stay active when this process stops.

The flows run in this process, so `--state` (default: BRAZE_MIGRATE_STATE here) gives the served deployments
that leave it unset their required `state` parameter; the deployment's Parameters tab then shows it.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import sys
from pathlib import Path

import yaml
from prefect import serve
from prefect.client.schemas.objects import ConcurrencyLimitConfig
from prefect.events import DeploymentEventTrigger
from prefect.schedules import Cron
from prefect.settings import PREFECT_API_URL

ROOT = Path(__file__).resolve().parent.parent
PREFECT_FILE = ROOT / "prefect.yaml"


def load_flow(entrypoint: str):
    """`flows/load.py:sync` → the flow object `sync` of module `flows.load`."""
    path, _, name = entrypoint.partition(":")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    return getattr(module, name)


def deployments(prefect_file: Path = PREFECT_FILE, names: list[str] | None = None, state: str | None = None) -> list:
    """A RunnerDeployment per deployment of the file (or of those named), as `prefect deploy` makes it; `state`:
    the state folder of those that leave it unset."""
    spec = yaml.safe_load(prefect_file.read_text())
    out = []
    for d in spec["deployments"]:
        if names and d["name"] not in names:
            continue
        schedules = [
            Cron(s["cron"], timezone=s.get("timezone"), active=s.get("active", True), slug=s.get("slug"))
            for s in d.get("schedules") or ()
        ]
        limit = d.get("concurrency_limit")
        if isinstance(limit, dict):
            limit = ConcurrencyLimitConfig(limit=limit["limit"],
                                           collision_strategy=limit.get("collision_strategy", "ENQUEUE"))
        flow = load_flow(d["entrypoint"])
        parameters = dict(d.get("parameters") or {})
        if state and "state" in inspect.signature(flow.fn).parameters:
            parameters.setdefault("state", state)
        out.append(flow.to_deployment(
            name=d["name"], description=d.get("description"), tags=d.get("tags"),
            parameters=parameters, schedules=schedules or None, concurrency_limit=limit,
            triggers=[DeploymentEventTrigger(**t) for t in d.get("triggers") or ()] or None,
        ))
    if names and len(out) != len(set(names)):
        raise SystemExit(f"unknown deployment name in {names}: see {prefect_file}")
    return out


def work_pool_conflicts(served: list) -> list[str]:
    """Deployments of these names that `prefect deploy` made for a work pool. Serving over one keeps its
    work pool and drops its code location, so every run would crash: they must be deleted first."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    found = []
    with get_client(sync_client=True) as client:
        for d in served:
            try:
                existing = client.read_deployment_by_name(f"{d.flow_name}/{d.name}")
            except ObjectNotFound:
                continue
            if existing.work_pool_name or existing.pull_steps:
                found.append(f"{d.flow_name}/{d.name}")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.serve", description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=2, help="flow runs at once in this process (default 2)")
    parser.add_argument("--only", action="append", metavar="NAME",
                        help="serve only this deployment (repeatable; default: all of prefect.yaml)")
    parser.add_argument("--prefect-file", type=Path, default=PREFECT_FILE)
    parser.add_argument("--state", default=os.environ.get("BRAZE_MIGRATE_STATE") or None, metavar="DIR",
                        help="the state folder (an absolute path) of the deployments that leave their `state` "
                             "parameter unset (default: BRAZE_MIGRATE_STATE)")
    args = parser.parse_args(argv)
    if not PREFECT_API_URL.value():
        print("flows.serve: PREFECT_API_URL is not set: start a server (`make ui`) and "
              "export PREFECT_API_URL=http://127.0.0.1:4200/api", file=sys.stderr)
        return 2
    served = deployments(args.prefect_file, args.only, args.state)
    conflicts = work_pool_conflicts(served)
    if conflicts:
        names = " ".join(f"'{name}'" for name in conflicts)
        print(f"flows.serve: {', '.join(conflicts)} already deployed to a work pool (prefect deploy); use "
              f"that worker, or delete them first: for d in {names}; do prefect deployment delete \"$d\"; "
              "done",
              file=sys.stderr)
        return 2
    serve(*served, limit=args.limit, pause_on_shutdown=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
