"""`braze-migrate emit-ready SOURCE`: the warehouse job's last step. It tells the Prefect server that tonight's
export is written by emitting the event `braze-migrate.export.ready` (resource `braze-migrate.export.NAME`,
`braze-migrate.source` = the folder); the `nightly-sync` deployment's trigger (prefect.yaml) then starts a sync
of that folder. One HTTP call to the Prefect API that PREFECT_API_URL names (the same call a job without Python
makes with curl: docs/prefect.md, "Start on an event"); no server answering is one line and exit 2, never a
traceback, so the job fails visibly instead of leaving the night unloaded."""

from __future__ import annotations

import argparse
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from braze_migrate.cli.exits import EXIT_OK
from braze_migrate.settings import ConfigError

EVENT = "braze-migrate.export.ready"
RESOURCE_PREFIX = "braze-migrate.export."  # the trigger in prefect.yaml matches `braze-migrate.export.*`
SOURCE_LABEL = "braze-migrate.source"  # the trigger's `source` parameter: {{ event.resource['braze-migrate.source'] }}
TIMEOUT_S = 15.0


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "emit-ready", help="tell Prefect an export is written: emits braze-migrate.export.ready, and the "
        "nightly-sync deployment's trigger starts a sync of that folder")
    p.add_argument("source", metavar="SOURCE", help="the export folder or prefix written tonight, as the worker sees "
                   "it (a relative path is sent as its absolute path and must exist here)")
    p.add_argument("--name", default="nightly", help="the export's name: the event's resource is "
                   "braze-migrate.export.NAME (default: nightly)")
    p.add_argument("--api-url", metavar="URL", help="the Prefect API, e.g. http://prefect:4200/api (default: "
                   "PREFECT_API_URL, or the active Prefect profile's)")
    p.add_argument("--json", action="store_true", help="print the event sent as one JSON object")
    return p


def run(args: argparse.Namespace) -> int:
    api, headers = _api(args.api_url)
    event = ready_event(_source(args.source), args.name)
    _post(api, headers, event)
    if args.json:
        print(json.dumps({"api": _shown(api), **event}, sort_keys=True))
    else:
        print(f"emitted {EVENT} for {event['resource'][SOURCE_LABEL]} to {_shown(api)} (event {event['id']}): "
              "a deployment whose trigger matches it (nightly-sync) starts a run of that folder")
    return EXIT_OK


def ready_event(source: str, name: str = "nightly") -> dict:
    """The event as the Prefect API's `POST /events` takes it (a list of these)."""
    if not name or any(c.isspace() for c in name):
        raise ConfigError(f"--name {name!r}: one word, it ends the event's resource id ({RESOURCE_PREFIX}NAME)")
    return {"id": str(uuid.uuid4()), "occurred": datetime.now(UTC).isoformat(), "event": EVENT,
            "resource": {"prefect.resource.id": RESOURCE_PREFIX + name, SOURCE_LABEL: source},
            "related": [], "payload": {}}


def _source(source: str) -> str:
    """A URL (s3://, gs://, az://, https://...) or an absolute path as given (the worker may see a folder this
    machine does not); a relative path as its absolute path, which must exist here."""
    path = Path(source).expanduser()
    if "://" in source or path.is_absolute():
        return str(path) if "://" not in source else source
    if not path.exists():
        raise ConfigError(f"{source}: no such folder here; emit the event once the export is written, naming it "
                          "as the worker sees it (an absolute path, or an s3:// or gs:// prefix)")
    return str(path.resolve())


def _api(url: str | None) -> tuple[str, dict]:
    """The Prefect API's URL and the headers it needs (a Prefect Cloud key, or a server's basic auth string)."""
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    api = (url or settings.api.url or "").rstrip("/")
    if not api:
        raise ConfigError("no Prefect API to send the event to: set PREFECT_API_URL (e.g. "
                          "http://prefect.internal:4200/api) or pass --api-url")
    headers = {"Content-Type": "application/json"}
    key = settings.api.key.get_secret_value() if settings.api.key else None
    auth = settings.api.auth_string.get_secret_value() if settings.api.auth_string else None
    if key:
        headers["Authorization"] = f"Bearer {key}"
    elif auth:
        import base64

        headers["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
    return api, headers


def _post(api: str, headers: dict, event: dict) -> None:
    import httpx

    try:
        response = httpx.post(f"{api}/events", json=[event], headers=headers, timeout=TIMEOUT_S)
    except httpx.HTTPError as exc:  # refused, unknown host, timeout, TLS
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"no Prefect server answers at {_shown(api)} ({reason}): is it running, and is "
                          "PREFECT_API_URL (or --api-url) its API address? The event was not sent") from None
    if response.status_code >= 300:
        raise ConfigError(f"the Prefect API at {_shown(api)} refused the event: HTTP {response.status_code} "
                          f"{' '.join(response.text.split())[:200]} (is this the API address, ending in /api?)")


def _shown(url: str) -> str:
    """The URL without any user or password in it (logs and output never carry a secret)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    return urlunsplit(parts._replace(netloc=host + (f":{parts.port}" if parts.port else "")))
