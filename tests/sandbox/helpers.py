"""Helpers shared by the sandbox conformance tests: an API wrapper and object builders."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from braze_sandbox import SandboxHandle

KEY = "conformance-key"
UNLIMITED = "1000000/1s"


@dataclass
class Api:
    """An authorized httpx client on one sandbox, with the sandbox's read-back handle."""

    http: httpx.Client
    handle: SandboxHandle

    def track(self, **arrays) -> httpx.Response:
        """POST /users/track with the given attributes/events/purchases arrays."""
        return self.http.post("/users/track", json=arrays)

    def export(self, **body) -> httpx.Response:
        """POST /users/export/ids."""
        return self.http.post("/users/export/ids", json=body)

    def profile(self, external_id: str) -> dict | None:
        return self.handle.profile(external_id)

    def stats(self) -> dict:
        return self.handle.stats()


def open_api(handle: SandboxHandle) -> Api:
    # Plain HTTP on loopback: verify=False spares loading a CA bundle for every client.
    client = httpx.Client(
        base_url=handle.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=10, verify=False
    )
    return Api(client, handle)


def attrs(external_id: str = "u1", **fields) -> dict:
    """An attributes object for one external_id."""
    return {"external_id": external_id, **fields}


def event(
    external_id: str = "u1", name: str = "played", time: str = "2024-05-01T12:00:00Z", **fields
) -> dict:
    """A valid event object."""
    return {"external_id": external_id, "name": name, "time": time, **fields}


def purchase(external_id: str = "u1", product_id: str = "sku-1", **fields) -> dict:
    """A valid purchase object."""
    body = {
        "external_id": external_id,
        "product_id": product_id,
        "currency": "USD",
        "price": 9.99,
        "time": "2024-05-01T12:00:00Z",
    }
    body.update(fields)
    return body


def error_types(response: httpx.Response) -> list[tuple[str, str, int]]:
    """The (type, input_array, index) triples of a response's errors."""
    return [(e["type"], e["input_array"], e["index"]) for e in response.json().get("errors", [])]
