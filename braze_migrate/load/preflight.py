"""A credentials check Braze answers with success, sent once before the first batch of a run is sent.

A load calls it only when a batch is ready to go (braze_migrate/load/applier.py), so a run with nothing to send
sends no request at all. The probe writes nothing and costs nothing: an attributes object for an id no one
has, with `"_update_existing_only": true` ("Setting this flag to true will put the API in 'Update Only'
mode": no profile is created, so no attribute is set and no data point logged). An empty `{"attributes": []}`
is not used: Braze answers it 400 ("Valid data must be provided ..."), an error in the customer's API usage
log on every run. `verify` probes `/users/export/ids` with an id no one has: Braze answers success listing
it under `invalid_user_ids`.

401/403/404 and an unreachable endpoint raise one BrazeConfigError line naming BRAZE_API_KEY and
BRAZE_REST_ENDPOINT, in a second, instead of retries for minutes; a 2xx or redirect that is not Braze's answer
raises the BrazeEndpointError that shows it. Any other answer (429, 5xx, a 400 from a Braze that reads the probe differently) is left to the
load's own retry layer.
"""

from __future__ import annotations

import httpx

from connectors.braze.outcomes import BrazeConfigError, classify

PROBE_ID = "braze-migrate-credentials-check"
TRACK_PROBE = {"attributes": [{"external_id": PROBE_ID, "_update_existing_only": True}]}
EXPORT_PROBE = {"external_ids": [PROBE_ID], "fields_to_export": ["external_id"]}


def check_credentials(endpoint: str, api_key: str, *, timeout: float = 5.0, transport=None,
                      path: str = "/users/track", body: dict | None = None) -> None:
    """Raise BrazeConfigError (one line naming BRAZE_API_KEY and BRAZE_REST_ENDPOINT) if Braze refuses us or
    cannot be reached. `verify` passes `path="/users/export/ids", body=EXPORT_PROBE` (its key may not have
    users.track)."""
    url = f"{endpoint.rstrip('/')}{path}"
    try:
        with httpx.Client(timeout=timeout, transport=transport) as client:
            response = client.post(url, headers={"Authorization": f"Bearer {api_key}"},
                                   json=TRACK_PROBE if body is None else body)
    except httpx.HTTPError as exc:
        raise BrazeConfigError(None, what=f"could not be reached ({type(exc).__name__})") from None
    if response.status_code in (401, 403, 404):
        raise BrazeConfigError(response.status_code)
    if response.status_code < 400:  # a redirect or a 2xx that is not Braze's JSON: a proxy, a login page
        classify(response.status_code, response.content, response.headers)
