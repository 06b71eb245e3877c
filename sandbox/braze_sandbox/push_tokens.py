"""Push token import rules: `push_tokens: [{app_id, token, device_id?}]` on an attributes object.

Only iOS (APNs) and Android (FCM) tokens can be imported; web push subscriptions cannot
(braze-api.md). `device_id`, when given, is 8 to 255 bytes.
"""

from __future__ import annotations

import re

from braze_sandbox import errors

_HEX = re.compile(r"^[0-9a-fA-F]{64,200}$")
_TOKEN = re.compile(r"^[\x21-\x7e]{1,4096}$")

Token = tuple[str, str, str | None]


def platform_of(app_id: str, token: str, push_apps: dict[str, str]) -> str:
    """The app's configured platform, else `ios` for an APNs-shaped (hex) token, else `android`."""
    platform = push_apps.get(app_id)
    if platform:
        return platform
    return "ios" if _HEX.match(token) else "android"


def check_tokens(value: object, push_apps: dict[str, str]) -> tuple[str | None, list[Token]]:
    """(error, [(app_id, token, device_id)]) for a `push_tokens` value."""
    if type(value) is not list:
        return errors.BAD_PUSH_TOKENS, []
    tokens = []
    for entry in value:
        if type(entry) is not dict:
            return errors.BAD_PUSH_TOKENS, []
        app_id, token, device_id = entry.get("app_id"), entry.get("token"), entry.get("device_id")
        if type(app_id) is not str or not app_id.strip():
            return errors.BAD_PUSH_TOKEN_APP_ID, []
        if push_apps and app_id not in push_apps or push_apps.get(app_id) == "web":
            return errors.BAD_PUSH_TOKEN_APP_ID, []
        if type(token) is not str or not token.strip():
            return errors.BAD_PUSH_TOKEN_STRING, []
        if not _TOKEN.match(token) or token.startswith(("http", "{")):
            return errors.BAD_PUSH_TOKEN_VALUE, []
        if push_apps.get(app_id) == "ios" and not _HEX.match(token):
            return errors.BAD_PUSH_TOKEN_VALUE, []
        if device_id is not None and (type(device_id) is not str or not 8 <= len(device_id.encode()) <= 255):
            return errors.BAD_DEVICE_ID, []
        tokens.append((app_id, token, device_id))
    return None, tokens
