"""The sandbox application: routing, auth, rate limits, faults, then the endpoint.

`/users/track`, `/users/export/ids` and `/users/delete` need `Authorization: Bearer KEY` like Braze; the local
test hooks under `/_sandbox/` need no key (see `admin`). Every handler is synchronous and runs on
the server's event-loop thread, so a request's objects apply atomically. Logs carry counts only,
never the key or payload contents.
"""

from __future__ import annotations

import logging

import orjson

from braze_sandbox import admin, catalogs, identity
from braze_sandbox.config import SandboxConfig, parse_mau_policy, parse_rate
from braze_sandbox.deletes import process_delete
from braze_sandbox.exporter import process_export
from braze_sandbox.faults import Faults
from braze_sandbox.httpserver import Request, Response
from braze_sandbox.persistence import Journal
from braze_sandbox.ratelimit import Limiter, MauLimiter
from braze_sandbox.rules import Rules
from braze_sandbox.stats import Stats
from braze_sandbox.store import Store
from braze_sandbox.track import process_track

log = logging.getLogger("braze_migrate.sandbox")

TRACK = "/users/track"
EXPORT = "/users/export/ids"
DELETE = "/users/delete"
UNAUTHORIZED = {"message": "Unauthorized: missing or unknown REST API key"}
RATE_LIMITED = {"message": "Rate Limit Exceeded"}
FAULT_MESSAGES = {502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}


def make_limiter(config: SandboxConfig) -> Limiter:
    """The `/users/track` limiter: MAU policy when configured, else the general fixed window."""
    if config.mau_policy:
        return MauLimiter(*parse_mau_policy(config.mau_policy))
    return Limiter(parse_rate(config.rate_limit))


class SandboxApp:
    """State of one sandbox server plus its request handler."""

    def __init__(self, config: SandboxConfig) -> None:
        self.journal = Journal(config.db_path) if config.db_path else None
        self.store = Store(self.journal)
        self.stats = Stats()
        self.catalogs = catalogs.Catalogs()  # catalogs.py: GET /catalogs and the catalog item endpoints
        self.faults = Faults(
            **{
                k: getattr(config, k)
                for k in (
                    "fail_rate",
                    "applied_then_fail_rate",
                    "reset_rate",
                    "storm_rate",
                    "latency_ms",
                    "seed",
                )
            }
        )
        self.apply_config(config)
        if self.journal is not None:
            self.journal.open(self.store, self.stats)

    def apply_config(self, config: SandboxConfig) -> None:
        """Take new settings (limits restart their windows); fault rates are set separately."""
        self.config = config
        self.rules = Rules.from_config(config)
        self.track_limiter = make_limiter(config)
        self.export_limiter = Limiter(parse_rate(config.export_rate_limit))
        self.delete_limiter = Limiter(parse_rate(config.delete_rate_limit))
        self.rename_limiter = Limiter(parse_rate(identity.RENAME_RATE))
        self.catalogs.configure(config.catalog_rate_limit, max_items=config.catalog_max_items)
        self.authorization = b"Bearer " + config.api_key.encode()

    def reset(self) -> None:
        """Forget profiles and counters, restart limit windows and the fault sequence."""
        self.store.clear()
        self.stats.clear()
        self.catalogs.clear()
        if self.journal is not None:
            self.journal.cleared()
        self.apply_config(self.config)
        self.faults.configure(seed=self.config.seed)

    def flush(self) -> None:
        """Hand pending writes to the SQLite writer (called periodically by the server)."""
        if self.journal is not None:
            self.journal.flush(self.store, self.stats)

    def close(self) -> None:
        """Final flush and a one-line summary of counts."""
        if self.journal is not None:
            self.journal.close(self.store, self.stats)
        counts = self.stats.to_dict()
        log.info(
            "sandbox stopped: %d requests, %d throttled, %d data points, %d profiles",
            counts["requests"],
            counts["throttled"],
            counts["data_points"],
            len(self.store.profiles),
        )

    def handle(self, request: Request) -> Response:
        """Route one request."""
        path = request.path
        if path == TRACK or path == EXPORT or path == DELETE:
            if request.method != "POST":
                return Response(405, {"message": "Method Not Allowed"}, [(b"Allow", b"POST")])
            if path == TRACK:
                return self._track(request)
            return self._export(request) if path == EXPORT else self._delete(request)
        if path in (identity.IDENTIFY, identity.ALIAS_NEW, identity.RENAME, identity.REMOVE):
            if request.method != "POST":
                return Response(405, {"message": "Method Not Allowed"}, [(b"Allow", b"POST")])
            limiter = self.delete_limiter if path in identity.SHARED_WITH_DELETE else self.rename_limiter
            hold = self.config.identity_latency_path in (None, path)
            held = self.config.identity_latency_ms / 1000 if hold else 0.0
            return self._user_request(request, path, limiter,
                                      lambda body: identity.process(path, body, self.store), held)
        if path == catalogs.PATH or path.startswith(catalogs.PATH + "/"):
            return self.catalogs.handle(self, request)
        if path == catalogs.HOOK:
            return self.catalogs.hook()
        if path.startswith(admin.PREFIX):
            return admin.handle(self, request)
        return Response(404, {"message": "Not Found"})

    def _answer(
        self, endpoint: str, status: int, payload: dict, headers: list, delay: float = 0.0
    ) -> Response:
        self.stats.answered(endpoint, status)
        return Response(status, payload, headers, delay)

    def _track(self, request: Request) -> Response:
        stats, limiter = self.stats, self.track_limiter
        stats.request(TRACK)
        if request.headers.get(b"authorization") != self.authorization:
            return self._answer(TRACK, 401, UNAUTHORIZED, limiter.admit(consume=False)[1])
        fault = self.faults.decide()
        delay = fault.latency_s
        if delay:
            stats.faults["latency"] += 1
        if fault.reset:
            stats.faults["reset"] += 1
            return Response(reset=True, delay=delay)
        allowed, headers = limiter.admit()
        if not allowed:
            return self._answer(TRACK, 429, RATE_LIMITED, headers, delay)
        if fault.storm:
            stats.faults["storm"] += 1
            return self._answer(TRACK, 429, RATE_LIMITED, limiter.storm_headers(), delay)
        if fault.fail_status:
            stats.faults["fail"] += 1
            return self._answer(
                TRACK, fault.fail_status, {"message": FAULT_MESSAGES[fault.fail_status]}, headers, delay
            )
        status, payload = _parse(request)
        if status == 0:
            status, payload = process_track(payload, self.store, self.rules, self.config.mode, stats)
            if status == 201 and fault.applied_then_fail_status:
                stats.faults["applied_then_fail"] += 1
                status = fault.applied_then_fail_status
                payload = {"message": FAULT_MESSAGES[status]}
        return self._answer(TRACK, status, payload, headers, delay)

    def _export(self, request: Request) -> Response:
        limiter = self.export_limiter
        self.stats.request(EXPORT)
        if request.headers.get(b"authorization") != self.authorization:
            return self._answer(EXPORT, 401, UNAUTHORIZED, limiter.admit(consume=False)[1])
        allowed, headers = limiter.admit()
        if not allowed:
            return self._answer(EXPORT, 429, RATE_LIMITED, headers)
        status, payload = _parse(request)
        if status == 0:
            status, payload = process_export(payload, self.store, self.config)
        return self._answer(EXPORT, status, payload, headers)

    def _delete(self, request: Request) -> Response:
        """`/users/delete`: its own limit (Braze: 20,000/min shared with identify, alias, merge)."""
        return self._user_request(request, DELETE, self.delete_limiter,
                                  lambda body: process_delete(body, self.store, self.config.delete_max_ids))

    def _user_request(self, request: Request, endpoint: str, limiter: Limiter, apply, held: float = 0.0
                      ) -> Response:
        """A users endpoint other than track (delete, identify, alias, rename, remove) under its own limiter;
        the injected faults apply as for `/users/track`, so a client's in-doubt handling can be tested."""
        stats = self.stats
        stats.request(endpoint)
        if request.headers.get(b"authorization") != self.authorization:
            return self._answer(endpoint, 401, UNAUTHORIZED, limiter.admit(consume=False)[1])
        fault = self.faults.decide()
        delay = fault.latency_s
        if fault.reset:
            stats.faults["reset"] += 1
            return Response(reset=True, delay=delay)
        allowed, headers = limiter.admit()
        if not allowed:
            return self._answer(endpoint, 429, RATE_LIMITED, headers, delay)
        if fault.fail_status:
            stats.faults["fail"] += 1
            return self._answer(endpoint, fault.fail_status, {"message": FAULT_MESSAGES[fault.fail_status]},
                                headers, delay)
        status, payload = _parse(request)
        if status == 0:
            status, payload = apply(payload)
            if status == 201 and fault.applied_then_fail_status:
                stats.faults["applied_then_fail"] += 1
                status = fault.applied_then_fail_status
                payload = {"message": FAULT_MESSAGES[status]}
        return self._answer(endpoint, status, payload, headers, delay + held)


def _parse(request: Request) -> tuple[int, object]:
    """(0, body) for a JSON body within the size limit, else (413|400, error answer)."""
    if request.body is None:
        return 413, {"message": "Request Entity Too Large", "errors": [{"type": "Request body over 4 MB"}]}
    try:
        return 0, orjson.loads(request.body)
    except orjson.JSONDecodeError:
        return 400, {"message": "Bad Request", "errors": [{"type": "The request body is not valid JSON"}]}
