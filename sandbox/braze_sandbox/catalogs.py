"""Catalogs: `GET /catalogs`, `POST /catalogs` and the asynchronous item endpoints
`POST|PATCH|PUT|DELETE /catalogs/{catalog_name}/items`, as Braze documents them.

Sources (braze.com/docs/api/endpoints/catalogs/...):
- catalog_management/synchronous/get_list_catalogs ("List catalogs"): `{"catalogs": [{name, description, fields:
  [{name, type}], num_items, updated_at}], "message": "success"}`; types `string`, `number`, `boolean`, `time`.
- catalog_items/asynchronous/post_create_catalog_items_bulk ("Create multiple catalog items"),
  patch_catalog_items_bulk ("Edit multiple catalog items": only the fields given change),
  put_update_catalog_items ("Update catalog items": the item is replaced, created when missing),
  delete_catalog_items_bulk ("Delete multiple catalog items"): up to 50 items per request; answers `202
  {"message": "success"}`, `400 {"errors": [{"id", "message", "parameters", "parameter_values"}], "message":
  "Invalid Request"}` or `404` (`catalog-not-found`); the error ids are the pages' Troubleshooting tables.
- Rate limits ("rate_limits" include): 16,000 requests per minute shared by all asynchronous catalog item
  endpoints; 50 per minute shared by the synchronous catalog endpoints (list, create).
What the pages leave open, decided here: a create of an id that already exists leaves the item as it is (a
create never edits), an edit or delete of an unknown id is ignored (the endpoints are asynchronous and answer
before applying). Catalogs live in memory only (not in the sandbox's journal).

Local test hook (no key, not limited): `GET /_sandbox/catalogs` -> every catalog's items and the counts of item
requests and items by method.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson

from braze_sandbox.config import parse_rate
from braze_sandbox.httpserver import Request, Response
from braze_sandbox.ratelimit import Limiter

PATH = "/catalogs"
HOOK = "/_sandbox/catalogs"
TYPES = ("string", "number", "boolean", "time", "array", "object")
_ID = re.compile(r"^[A-Za-z0-9_-]+$")
MAX_ID = 250
MAX_VALUE = 5000
METHODS = ("POST", "PATCH", "PUT", "DELETE")
INVALID = "Invalid Request"


@dataclass
class Catalog:
    name: str
    description: str
    fields: list[dict]
    items: dict[str, dict] = field(default_factory=dict)
    updated_at: str = ""

    def listing(self) -> dict:
        return {"description": self.description, "fields": self.fields, "name": self.name,
                "num_items": len(self.items), "updated_at": self.updated_at}


class Catalogs:
    """Every catalog of the workspace, the two documented limits and the counts tests read back."""

    def __init__(self) -> None:
        self.catalogs: dict[str, Catalog] = {}
        self.requests = dict.fromkeys(METHODS, 0)
        self.items_sent = dict.fromkeys(METHODS, 0)
        self.configure()

    def configure(self, items_rate: str = "16000/60s", catalogs_rate: str = "50/60s", max_items: int = 50) -> None:
        self.items_limiter = Limiter(parse_rate(items_rate))
        self.catalogs_limiter = Limiter(parse_rate(catalogs_rate))
        self.max_items = max_items

    def clear(self) -> None:
        self.catalogs.clear()
        self.requests = dict.fromkeys(METHODS, 0)
        self.items_sent = dict.fromkeys(METHODS, 0)

    def hook(self) -> Response:
        return Response(200, {
            "catalogs": {name: {"fields": c.fields, "items": c.items} for name, c in self.catalogs.items()},
            "requests": self.requests, "items": self.items_sent,
        })

    def handle(self, app, request: Request) -> Response:
        """One request under `/catalogs` (authorized, limited, faults as for /users/track)."""
        parts = request.path.rstrip("/").split("/")[2:]  # "", "catalogs", ...
        if request.headers.get(b"authorization") != app.authorization:
            return Response(401, {"message": "Unauthorized: missing or unknown REST API key"})
        if not parts:
            if request.method not in ("GET", "POST"):
                return Response(405, {"message": "Method Not Allowed"}, [(b"Allow", b"GET, POST")])
            allowed, headers = self.catalogs_limiter.admit()
            if not allowed:
                return Response(429, {"message": "Rate Limit Exceeded"}, headers)
            if request.method == "GET":
                return Response(200, {"catalogs": [c.listing() for c in self.catalogs.values()],
                                      "message": "success"}, headers)
            return self._create_catalogs(request, headers)
        if len(parts) != 2 or parts[1] != "items":
            return Response(404, {"message": "Not Found"})
        if request.method not in METHODS:
            return Response(405, {"message": "Method Not Allowed"}, [(b"Allow", b", ".join(m.encode() for m in METHODS))])
        fault = app.faults.decide()
        if fault.reset:
            return Response(reset=True, delay=fault.latency_s)
        allowed, headers = self.items_limiter.admit()
        if not allowed:
            return Response(429, {"message": "Rate Limit Exceeded"}, headers, fault.latency_s)
        if fault.fail_status:
            return Response(fault.fail_status, {"message": "Service Unavailable"}, headers, fault.latency_s)
        status, payload = self._items(parts[0], request)
        if status == 202 and fault.applied_then_fail_status:
            status, payload = fault.applied_then_fail_status, {"message": "Service Unavailable"}
        return Response(status, payload, headers, fault.latency_s)

    def _create_catalogs(self, request: Request, headers) -> Response:
        body = _body(request)
        specs = body.get("catalogs") if body is not None else None
        if type(specs) is not list or len(specs) != 1 or type(specs[0]) is not dict:
            return Response(400, _errors("catalog-array-invalid", "catalogs must be an array of one catalog"), headers)
        spec = specs[0]
        name, fields = spec.get("name"), spec.get("fields")
        if type(name) is not str or not _ID.match(name):
            return Response(400, _errors("invalid-catalog-name", "Catalog name can only include letters, numbers, "
                                         "hyphens, and underscores", ["name"], [name]), headers)
        if name in self.catalogs:
            return Response(400, _errors("catalog-name-already-exists", "Catalog with the given name already "
                                         "exists", ["name"], [name]), headers)
        if (type(fields) is not list or not fields or fields[0] != {"name": "id", "type": "string"}
                or any(type(f) is not dict or f.get("type") not in TYPES for f in fields)):
            return Response(400, _errors("invalid-fields", "fields must start with {name: id, type: string} and "
                                         "use the types " + ", ".join(TYPES), ["fields"], []), headers)
        catalog = Catalog(name, str(spec.get("description", "")), [dict(f) for f in fields], {}, _now())
        self.catalogs[name] = catalog
        return Response(201, {"catalogs": [catalog.listing()], "message": "success"}, headers)

    def _items(self, name: str, request: Request) -> tuple[int, dict]:
        method = request.method
        self.requests[method] += 1
        catalog = self.catalogs.get(name)
        if catalog is None:
            return 404, _errors("catalog-not-found", "Could not find catalog", ["catalog_name"], [name])
        body = _body(request)
        items = body.get("items") if body is not None else None
        if type(items) is not list or any(type(i) is not dict for i in items):
            return 400, _errors("item-array-invalid", "items must be an array of objects")
        if len(items) > self.max_items:
            return 400, _errors("request-includes-too-many-items", f"Request includes too many items: at most "
                                f"{self.max_items} per request")
        problem = _check_items(catalog, items, method)
        if problem is not None:
            return 400, problem
        self.items_sent[method] += len(items)
        _apply(catalog, items, method)
        return 202, {"message": "success"}


def _check_items(catalog: Catalog, items: list[dict], method: str) -> dict | None:
    missing = sum(1 for i in items if "id" not in i)
    if missing:
        return _errors("items-missing-ids", f"There are {missing} item(s) that do not have ids")
    ids = [i["id"] for i in items]
    for code, message, bad in (
        ("ids-not-strings", "Item IDs must be strings", [v for v in ids if type(v) is not str]),
        ("ids-too-large", f"Item IDs can't be more than {MAX_ID} characters",
         [v for v in ids if type(v) is str and len(v) > MAX_ID]),
        ("invalid-ids", "Item IDs can only include letters, numbers, hyphens, and underscores",
         [v for v in ids if type(v) is str and not _ID.match(v)]),
        ("ids-not-unique", "Item IDs must be unique in the request", [v for v in ids if ids.count(v) > 1]),
    ):
        if bad:
            return _errors(code, message, ["id"] * len(bad), bad[:50])
    if method == "DELETE":
        return None
    types = {f["name"]: f["type"] for f in catalog.fields}
    for item in items:
        unknown = [k for k in item if k not in types]
        if unknown:
            return _errors("invalid-fields", "Some of the fields given do not exist in the catalog", ["id"], [item["id"]])
        for key, value in item.items():
            if _bad_keys(value):
                return _errors("invalid-keys-in-value-object", "Item object keys can't include '.' or '$'", ["id"],
                               [item["id"]])
            if type(value) is str and len(value) > MAX_VALUE:
                return _errors("items-too-large", f"Item values can't exceed {MAX_VALUE} characters", ["id"],
                               [item["id"]])
            if key != "id" and not _coerces(value, types[key], method):
                return _errors("unable-to-coerce-value", f"Item field {key!r} can't be converted to "
                               f"{types[key]}", ["id"], [item["id"]])
    return None


def _apply(catalog: Catalog, items: list[dict], method: str) -> None:
    for item in items:
        item_id = item["id"]
        if method == "DELETE":
            catalog.items.pop(item_id, None)
        elif method == "POST":
            catalog.items.setdefault(item_id, dict(item))
        elif method == "PUT":
            catalog.items[item_id] = dict(item)
        elif item_id in catalog.items:  # PATCH: only the fields given change
            current = catalog.items[item_id]
            for key, value in item.items():
                if type(value) is dict and ("$add" in value or "$remove" in value):
                    have = [v for v in current.get(key) or [] if v not in value.get("$remove", [])]
                    current[key] = have + [v for v in value.get("$add", []) if v not in have]
                else:
                    current[key] = value
    catalog.updated_at = _now()


def _coerces(value, kind: str, method: str) -> bool:
    if value is None:
        return True
    t = type(value)
    if kind == "string":
        return t is str
    if kind == "number":
        return t is int or t is float
    if kind == "boolean":
        return t is bool
    if kind == "time":
        if t is not str:
            return False
        try:
            datetime.fromisoformat(value)
        except ValueError:
            return False
        return True
    if kind == "array":  # `$add` / `$remove` are PATCH operators on array fields
        return t is list or (method == "PATCH" and t is dict and set(value) <= {"$add", "$remove"})
    return t is dict


def _bad_keys(value) -> bool:
    if type(value) is dict:
        return any(("." in k or "$" in k) and k not in ("$add", "$remove") or _bad_keys(v) for k, v in value.items())
    if type(value) is list:
        return any(_bad_keys(v) for v in value)
    return False


def _errors(code: str, message: str, parameters: list | None = None, values: list | None = None) -> dict:
    return {"errors": [{"id": code, "message": message, "parameters": parameters or [],
                        "parameter_values": values or []}], "message": INVALID}


def _body(request: Request) -> dict | None:
    try:
        data = orjson.loads(request.body or b"")
    except orjson.JSONDecodeError:
        return None
    return data if type(data) is dict else None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")
