"""Object stores (`s3://`, `gs://`, `az://`): list a prefix or a glob, and the options to read it with.

Listing goes through obstore, a binding of the same Rust `object_store` crate that Polars' readers use,
so one set of options — and the same environment variables (`AWS_*`, `GOOGLE_*`, `AZURE_*`) when the
mapping file gives none — serves both the listing and the reads. Error text from a store is reduced to
the URI, the HTTP status and the store's error code, with every secret value removed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import obstore
import obstore.exceptions
from obstore.store import from_url

from connectors.errors import SourceError

SCHEMES = ("s3", "gs", "az")
GLOB_CHARS = re.compile(r"[*?\[]")
# A wrong endpoint should fail in seconds, not after object_store's default 10 retries over 3 minutes.
RETRY = {"max_retries": 2, "retry_timeout": timedelta(seconds=20)}

# Mapping-file storage option → object_store key, per scheme; `allow_http` is a client option.
_OPTION_KEYS = {
    "s3": {
        "endpoint": "aws_endpoint_url",
        "region": "aws_region",
        "anonymous": "aws_skip_signature",
        "access_key_id_env": "aws_access_key_id",
        "secret_access_key_env": "aws_secret_access_key",
        "session_token_env": "aws_session_token",
    },
    "gs": {
        "endpoint": "google_base_url",
        "anonymous": "google_skip_signature",
        "service_account_path": "google_service_account",
        "service_account_key_env": "google_service_account_key",
    },
    "az": {
        "endpoint": "azure_endpoint",
        "anonymous": "azure_skip_signature",
        "account_name": "azure_storage_account_name",
        "account_key_env": "azure_storage_account_key",
        "sas_token_env": "azure_storage_sas_key",
    },
}
# Secrets the stores read from the environment by themselves: scrubbed from messages like the mapped ones.
_SECRET_VARIABLES = (
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "GOOGLE_SERVICE_ACCOUNT_KEY",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_SAS_KEY",
    "AZURE_CLIENT_SECRET",
)
_CREDENTIAL_HINT = {
    "s3": "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or storage.access_key_id_env/secret_access_key_env",
    "gs": "GOOGLE_SERVICE_ACCOUNT(_KEY), or storage.service_account_path/service_account_key_env",
    "az": "AZURE_STORAGE_ACCOUNT_NAME/AZURE_STORAGE_ACCOUNT_KEY, or storage.account_name/account_key_env",
}


def scheme_of(location: str) -> str | None:
    """`s3`, `gs` or `az` for an object-store URI; None for a local path."""
    m = re.match(r"^([a-z0-9]+)://", location)
    if m is None:
        return None
    if m.group(1) not in SCHEMES:
        raise SourceError(
            f"{location}: {m.group(1)}:// is not supported: use a local path, s3://, gs:// or az://"
        )
    return m.group(1)


@dataclass(frozen=True)
class StoreOptions:
    """Resolved options of one scheme: what Polars and obstore are given, and the secrets to scrub."""

    scheme: str
    config: dict[str, str] = field(default_factory=dict, repr=False)
    allow_http: bool = False
    secrets: tuple[str, ...] = field(default=(), repr=False)

    def polars(self) -> dict[str, str] | None:
        """`storage_options` for Polars' readers (None: Polars reads the environment itself)."""
        opts = dict(self.config)
        if self.allow_http:
            opts["allow_http"] = "true"
        return opts or None

    def scrub(self, text: str) -> str:
        """`text` with every known secret value replaced by ***."""
        for secret in self.secrets:
            if secret:
                text = text.replace(secret, "***")
        return text


def resolve_options(scheme: str, storage, environ: MappingABC[str, str]) -> StoreOptions:
    """The options of `scheme` from a mapping file's `storage` section (None: the environment only).

    Secret values are read from the environment variables the section names; options of other schemes
    are left out (`unused_options` reports those that apply to no scheme in use).
    """
    secrets = [environ.get(name, "") for name in _SECRET_VARIABLES]
    if storage is None:
        return StoreOptions(scheme, secrets=tuple(secrets))
    keys = _OPTION_KEYS[scheme]
    config = {}
    for name, value in storage:
        if name not in keys or value in (None, False):
            continue
        if name.endswith("_env"):
            value = environ.get(value, "")
            secrets.append(value)
        config[keys[name]] = "true" if value is True else str(value)
    return StoreOptions(scheme, config, storage.allow_http, tuple(secrets))


def unused_options(storage, schemes: set[str]) -> list[str]:
    """Options set in `storage` that apply to none of `schemes` (an Azure key for an s3:// source)."""
    if storage is None:
        return []
    applicable = {"allow_http"}.union(*(_OPTION_KEYS[s] for s in schemes))
    return [name for name, value in storage if value not in (None, False) and name not in applicable]


@dataclass(frozen=True)
class StoreObject:
    """One object: its full URI, size and entity tag (what a fingerprint needs)."""

    uri: str
    size: int
    etag: str | None


def split(uri: str) -> tuple[str, str, str]:
    """(scheme, bucket or container, key) of an object-store URI."""
    m = re.match(r"^([a-z0-9]+)://([^/]+)/?(.*)$", uri)
    if m is None:
        raise SourceError(f"{uri}: not a valid object-store URI (expected like s3://bucket/prefix/)")
    return m.group(1), m.group(2), m.group(3)


def list_objects(uri: str, options: StoreOptions) -> list[StoreObject]:
    """Every object under `uri` (a prefix, an object, or a glob such as `s3://b/x/**/*.parquet`), by key."""
    scheme, bucket, key = split(uri)
    glob = GLOB_CHARS.search(key)
    prefix = key[: key.rfind("/", 0, glob.start()) + 1] if glob else key
    objects = _list(scheme, bucket, prefix, options, uri)
    if glob:
        pattern = glob_regex(key)
        return [o for o in objects if pattern.match(split(o.uri)[2])]
    exact = [o for o in objects if split(o.uri)[2] == key]
    if exact:
        return exact
    folder = key if key.endswith("/") or not key else key + "/"
    return [o for o in objects if split(o.uri)[2].startswith(folder)]


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A glob as a regex on keys: `*` and `?` stay within a folder, `**/` spans any number of folders."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and (end := pattern.find("]", i + 1)) > i:
            body = pattern[i + 1 : end]
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def explain(err: BaseException, uri: str, options: StoreOptions, action: str = "read") -> SourceError:
    """A one-line SourceError for a failed store operation: the URI, the status and code, what to check."""
    text = options.scrub(str(err))
    status = re.search(r"\b([45]\d\d) ([A-Z][A-Za-z ]+?)(?::|$| \()", text)
    code = re.search(r"<Code>([^<]+)</Code>", text)
    if status:
        reason = f"{status.group(1)} {status.group(2)}" + (f" ({code.group(1)})" if code else "")
    elif re.search(r"connect|dns|resolve|refused|timed out", text, re.IGNORECASE):
        reason = "the endpoint could not be reached"
    else:
        reason = (text.strip().splitlines() or [type(err).__name__])[0][:160]
    if status and status.group(1) in ("401", "403"):
        todo = f"check the credentials ({_CREDENTIAL_HINT[options.scheme]})"
    elif status and status.group(1) == "404":
        todo = "check the bucket and the path"
    else:
        todo = "check the endpoint, the network and the credentials"
    return SourceError(f"could not {action} {uri}: {reason}: {todo}")


def download(uri: str, options: StoreOptions, target: Path) -> Path:
    """Stream one object into the local file `target`, a chunk at a time (memory holds one chunk)."""
    scheme, bucket, key = split(uri)
    try:
        result = obstore.get(_store(scheme, bucket, options), key)
        with open(target, "wb") as fh:
            fh.writelines(result.stream(min_chunk_size=DOWNLOAD_CHUNK))
    except (obstore.exceptions.BaseError, OSError, ValueError) as exc:
        raise explain(exc, uri, options, "read") from None
    return target


DOWNLOAD_CHUNK = 8 << 20


def _store(scheme: str, bucket: str, options: StoreOptions):
    return from_url(
        f"{scheme}://{bucket}",
        config=options.config,
        client_options={"allow_http": True} if options.allow_http else None,
        retry_config=RETRY,
    )


def _list(scheme: str, bucket: str, prefix: str, options: StoreOptions, uri: str) -> list[StoreObject]:
    try:
        store = _store(scheme, bucket, options)
        found = []
        for batch in obstore.list(store, prefix=prefix or None, chunk_size=1000):
            found.extend(
                StoreObject(f"{scheme}://{bucket}/{m['path']}", int(m["size"]), m.get("e_tag")) for m in batch
            )
    except (obstore.exceptions.BaseError, OSError, ValueError) as exc:
        raise explain(exc, uri, options, "list") from None
    return sorted(found, key=lambda o: o.uri)
