"""A first request that proves the endpoint and key before a long run starts (and before Prefect spins up).

An empty `attributes` array writes nothing and costs no data point; Braze checks the key before the body,
so 401/403/404 surface here within a second instead of after planning and start-up. It is sent only when
the plan has something to send, so a run with nothing to do sends no request at all.
"""

from __future__ import annotations

import httpx

from connectors.braze.outcomes import BrazeConfigError, classify


def check_credentials(endpoint: str, api_key: str, *, timeout: float = 5.0, transport=None,
                      path: str = "/users/track", body: dict | None = None) -> None:
    """Raise BrazeConfigError (one line naming BRAZE_API_KEY and BRAZE_REST_ENDPOINT) if Braze refuses us or
    cannot be reached. `verify` checks `/users/export/ids` (its key may not have users.track)."""
    url = f"{endpoint.rstrip('/')}{path}"
    try:
        with httpx.Client(timeout=timeout, transport=transport) as client:
            response = client.post(url, headers={"Authorization": f"Bearer {api_key}"},
                                   json={"attributes": []} if body is None else body)
    except httpx.HTTPError as exc:
        raise BrazeConfigError(None, what=f"could not be reached ({type(exc).__name__})") from None
    if response.status_code in (401, 403, 404):
        raise BrazeConfigError(response.status_code)
    if response.status_code < 400:  # a redirect or a 2xx that is not Braze's JSON: a proxy, a login page
        classify(response.status_code, response.content, response.headers)
