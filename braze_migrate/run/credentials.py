"""Braze credentials: from the environment, or from a Prefect Secret block named in settings.

Never a flow parameter, never logged: the key leaves this module only towards the HTTP client.
"""

from __future__ import annotations

import os

from braze_migrate.settings import BrazeSettings, ConfigError, LoadSettings

SECRET_BLOCK_ENV = "BRAZE_API_KEY_SECRET_BLOCK"


def resolve_credentials(settings: LoadSettings | None = None) -> tuple[str, str]:
    """(endpoint, api key). `BRAZE_API_KEY` wins; else the Prefect Secret block named by
    `BRAZE_API_KEY_SECRET_BLOCK`; a missing one is a one-line ConfigError naming what to set."""
    braze = BrazeSettings()
    block = os.environ.get(SECRET_BLOCK_ENV)
    if braze.api_key is None and block:
        from prefect.blocks.system import Secret

        try:
            value = Secret.load(block).get()
        except Exception as exc:  # noqa: BLE001 - any failure to load is a configuration problem
            raise ConfigError(
                f"could not load the Prefect Secret block {block!r} named by {SECRET_BLOCK_ENV} "
                f"({type(exc).__name__}); create it or set BRAZE_API_KEY"
            ) from None
        braze = BrazeSettings(api_key=value, rest_endpoint=braze.rest_endpoint)
    return braze.require()
