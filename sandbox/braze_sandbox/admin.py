"""Local test hooks under `/_sandbox/`: read state back, alter it, reset it, change faults and limits.

These routes need no API key (they are local hooks; an `Authorization` header is ignored), are not
rate limited, meet no injected fault, and are not counted in the request counters.

    GET    /_sandbox/health                 {"status": "ok"}
    GET    /_sandbox/stats                  counters, plus profile/event/purchase totals
    GET    /_sandbox/profiles               {profile key: profile} for every profile
    GET    /_sandbox/state                  {"profiles": ..., "stats": ..., "config": ...}
    GET    /_sandbox/users/{external_id}    one profile, 404 when unknown
    PATCH  /_sandbox/users/{external_id}    alter it: standard fields, "custom_attributes" (merged,
                                            null removes), "push_tokens", "events", "purchases"
                                            (replaced); "?create=1" creates a missing profile
    DELETE /_sandbox/users/{external_id}    remove the profile
    POST   /_sandbox/reset                  forget profiles and counters
    GET    /_sandbox/config                 settings (never the key) and fault rates
    PATCH  /_sandbox/config                 change settings and/or fault rates while running
"""

from __future__ import annotations

import dataclasses

import orjson

from braze_sandbox.config import FAULT_FIELDS, SandboxConfig
from braze_sandbox.httpserver import Request, Response
from braze_sandbox.standard_fields import CHECKS
from braze_sandbox.store import Profile

PREFIX = "/_sandbox/"
USERS = "/_sandbox/users/"
PATCHABLE = frozenset(CHECKS) | {"custom_attributes", "push_tokens", "events", "purchases"}
CONFIG_FIELDS = frozenset(f.name for f in dataclasses.fields(SandboxConfig)) - {"api_key", "db_path"}


def stats_of(app) -> dict:
    """The counters with the store's totals."""
    return {
        **app.stats.to_dict(),
        "profiles": len(app.store.profiles),
        "events_stored": app.store.events_stored,
        "purchases_stored": app.store.purchases_stored,
    }


def profiles_of(app) -> dict:
    """Every profile by its key (external_id, `alias:LABEL:NAME` or `braze_id:ID`)."""
    return {p.key: p.to_dict() for p in app.store.profiles.values()}


def config_of(app) -> dict:
    """The settings (never the key) with the current fault rates."""
    return {**app.config.public_dict(), **app.faults.settings()}


def handle(app, request: Request) -> Response:
    """Route one `/_sandbox/` request."""
    path, method = request.path, request.method
    if path.startswith(USERS) and len(path) > len(USERS):
        return _user(app, path[len(USERS) :], request)
    route = (method, path[len(PREFIX) :].rstrip("/"))
    if route == ("GET", "health"):
        return Response(200, {"status": "ok"})
    if route == ("GET", "stats"):
        return Response(200, stats_of(app))
    if route == ("GET", "profiles"):
        return Response(200, profiles_of(app))
    if route == ("GET", "state"):
        return Response(200, {"profiles": profiles_of(app), "stats": stats_of(app), "config": config_of(app)})
    if route == ("POST", "reset"):
        app.reset()
        return Response(200, {"message": "reset"})
    if route == ("GET", "config"):
        return Response(200, config_of(app))
    if route == ("PATCH", "config"):
        return _configure(app, request)
    return Response(404, {"message": "Not Found"})


def _json(request: Request) -> dict | None:
    try:
        data = orjson.loads(request.body or b"{}")
    except orjson.JSONDecodeError:
        return None
    return data if type(data) is dict else None


def _configure(app, request: Request) -> Response:
    changes = _json(request)
    if changes is None:
        return Response(400, {"message": "Expected a JSON object"})
    unknown = set(changes) - CONFIG_FIELDS
    if unknown:
        return Response(400, {"message": f"Unknown settings: {', '.join(sorted(unknown))}"})
    try:
        app.faults.configure(**{k: v for k, v in changes.items() if k in FAULT_FIELDS})
        settings = {k: v for k, v in changes.items() if k not in FAULT_FIELDS or k == "seed"}
        if settings:
            app.apply_config(app.config.replace(**settings))
    except (TypeError, ValueError) as error:
        return Response(400, {"message": str(error)})
    return Response(200, config_of(app))


def _user(app, external_id: str, request: Request) -> Response:
    store, method = app.store, request.method
    profile = store.by_external_id.get(external_id)
    if method == "PATCH" and profile is None and b"create=1" in request.query:
        profile = store.resolve(("external_id", external_id), create=True)
    if profile is None:
        return Response(404, {"message": "Not Found"})
    if method == "GET":
        return Response(200, profile.to_dict())
    if method == "DELETE":
        _delete(app, profile)
        return Response(200, {"message": "deleted"})
    if method != "PATCH":
        return Response(405, {"message": "Method Not Allowed"})
    changes = _json(request)
    if changes is None or set(changes) - PATCHABLE:
        return Response(400, {"message": f"Expected a JSON object with keys among {sorted(PATCHABLE)}"})
    try:
        _patch(app, profile, changes)
    except (AttributeError, KeyError, TypeError) as error:
        return Response(400, {"message": f"Bad alteration: {type(error).__name__}"})
    return Response(200, profile.to_dict())


def _patch(app, profile: Profile, changes: dict) -> None:
    """Apply a test's alteration as given, without Braze's validation (it is a test hook)."""
    store = app.store
    for name, value in changes.items():
        if name == "custom_attributes":
            for key, item in value.items():
                if item is None:
                    profile.custom.pop(key, None)
                else:
                    profile.custom[key] = item
        elif name == "push_tokens":
            for entry in list(profile.tokens):
                store.token_owner.pop((entry["app_id"], entry["token"]), None)
            profile.tokens = []
            for entry in value:
                store.add_token(profile, entry["app_id"], entry["token"], entry.get("device_id"))
        elif name in ("events", "purchases"):
            counter = f"{name}_stored"
            setattr(store, counter, getattr(store, counter) + len(value) - len(getattr(profile, name)))
            setattr(profile, name, list(value))
            if store.journal is not None:
                store.journal.replaced(profile)
        else:
            store.set_field(profile, name, value)
    store.touch(profile)


def _delete(app, profile: Profile) -> None:
    app.store.delete(profile)
