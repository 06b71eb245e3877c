"""Tonight's export: the source a run reads for its logical date, and whether the warehouse finished writing it.

- **Templates**: a source may name its date, `s3://bucket/braze/{date:%Y-%m-%d}/` or `exports/{date}`;
  `resolve` fills it with the run's logical date (docs/prefect.md, "Tonight's export"). Tokens: `{date}` (the
  logical date, `%Y-%m-%d`), `{yesterday}` (the day before), each with any strftime format after a colon.
- **Readiness**: with a marker set, the folder is read only once the marker is there: a flag file (`_SUCCESS`),
  or a manifest (a name ending in `.json`) listing the files with their row counts and SHA-256 checksums, which
  are then checked so a truncated or half-copied export is refused rather than loaded.

Local folders and object stores (s3://, gs://, az://) alike. No clock or sleep of its own: `wait_ready` takes
them as arguments, so tests never depend on wall-clock speed.
"""

from __future__ import annotations

import hashlib
import json
import os
import string
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date as Date
from datetime import timedelta
from pathlib import Path

from connectors.errors import SourceError

TOKENS = ("date", "yesterday")
DEFAULT_FORMAT = "%Y-%m-%d"
MANIFEST_SUFFIX = ".json"


class TemplateError(SourceError):
    """A source template that cannot be filled: the message names the token and the tokens there are."""


class ExportNotReady(SourceError):
    """The marker did not appear before the deadline: one line naming the source, the marker and the wait."""


class ExportIncomplete(SourceError):
    """The manifest and the files disagree (missing file, row count, checksum): the export is refused."""


def is_template(source: str) -> bool:
    """Whether `source` names a date token (`{date...}`, `{yesterday...}`)."""
    return any(name in TOKENS for _, name, _, _ in _fields(source))


def resolve(source: str, logical: Date) -> str:
    """`source` with its date tokens filled for `logical`; a source without tokens is returned as it is."""
    out = []
    values = {"date": logical, "yesterday": logical - timedelta(days=1)}
    for literal, name, spec, conversion in _fields(source):
        out.append(literal)
        if name is None:
            continue
        if name not in TOKENS or conversion:
            raise TemplateError(f"source {source!r}: unknown token {{{name}}}: use {{date}} or {{yesterday}}, "
                                "optionally with a strftime format such as {date:%Y/%m/%d}")
        out.append(values[name].strftime(spec or DEFAULT_FORMAT))
    return "".join(out)


def _fields(source: str) -> list[tuple[str, str | None, str, str | None]]:
    try:
        return list(string.Formatter().parse(source))
    except ValueError as exc:
        raise TemplateError(f"source {source!r} is not a valid template ({exc}): write braces as {{date}}") from None


@dataclass(frozen=True)
class ManifestFile:
    """One file the manifest names (path relative to the export folder) and what it must hold."""

    path: str
    rows: int | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class Ready:
    """An export found complete: where, which marker, how long the run waited for it, and the manifest's files."""

    source: str
    marker: str | None
    waited_s: float = 0.0
    files: tuple[ManifestFile, ...] = field(default_factory=tuple)

    @property
    def line(self) -> str:
        if self.marker is None:
            return f"{self.source}: no readiness marker configured, read as it is"
        checked = f", {len(self.files)} files checked against it" if self.files else ""
        return f"{self.source}: {self.marker} found after {self.waited_s:.0f} s of waiting{checked}"


Probe = Callable[[str, str], bytes | None]  # (folder, name) → the marker's bytes, None while absent


def wait_ready(source: str, marker: str | None, *, deadline_s: float, poll_s: float,
               on_wait: Callable[[float, float, str], None] | None = None,
               clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
               probe: Probe | None = None) -> Ready:
    """Wait until `marker` exists in the export folder `source` (at most `deadline_s` seconds, looking every
    `poll_s`), then check the manifest when the marker is one. `on_wait(waited, deadline, what)` is told each
    look. Past the deadline: ExportNotReady, one line."""
    if not marker:
        return Ready(source, None)
    probe = probe or read_marker
    started = clock()
    while True:
        body = probe(source, marker)
        waited = clock() - started
        if body is not None:
            ready = Ready(source, marker, waited)
            if marker.endswith(MANIFEST_SUFFIX):
                files = parse_manifest(body, f"{_join(source, marker)}")
                check_manifest(source, files, f"{_join(source, marker)}")
                ready = Ready(source, marker, waited, tuple(files))
            if on_wait:
                on_wait(waited, deadline_s, f"{marker} found")
            return ready
        if waited >= deadline_s:
            raise ExportNotReady(
                f"export not ready: {_join(source, marker)} did not appear within {_duration(deadline_s)}; "
                "check the warehouse's export job, then run again (or raise --ready-deadline)")
        if on_wait:
            on_wait(waited, deadline_s, f"waiting for {marker}")
        sleep(min(poll_s, max(0.0, deadline_s - waited)) or poll_s)


def read_marker(source: str, marker: str) -> bytes | None:
    """The marker file's bytes, or None while it is not there (local folder or object store)."""
    location = _join(source, marker)
    if not _remote(source):
        path = Path(location)
        try:
            return path.read_bytes() if path.is_file() else None
        except OSError as exc:
            raise SourceError(f"{location}: not readable ({exc.strerror}): grant read access to the export") from None
    return _store_get(location, missing_ok=True)


def parse_manifest(body: bytes, where: str) -> list[ManifestFile]:
    """The manifest's files: `{"files": [{"path": "users.parquet", "rows": 1000, "sha256": "…"}, …]}`."""
    try:
        data = json.loads(body)
        files = [ManifestFile(str(f["path"]), None if f.get("rows") is None else int(f["rows"]),
                              f.get("sha256")) for f in data["files"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise ExportIncomplete(f"{where}: not a manifest ({type(exc).__name__}: {exc}): expected "
                               '{"files": [{"path": ..., "rows": ..., "sha256": ...}]}') from None
    if not files:
        raise ExportIncomplete(f"{where}: the manifest names no file: the export job wrote nothing?")
    return files


def check_manifest(source: str, files: list[ManifestFile], where: str) -> None:
    """Refuse the export when a file the manifest names is missing, or its checksum or row count differs."""
    for f in files:
        location = _join(source, f.path)
        if f.path.startswith("/") or ".." in Path(f.path).parts:
            raise ExportIncomplete(f"{where}: {f.path!r} is not a path inside the export folder")
        if f.sha256 is not None:
            digest = _sha256(location)
            if digest is None:
                raise ExportIncomplete(f"export incomplete: {location}, named in {where}, is missing")
            if digest != f.sha256.lower():
                raise ExportIncomplete(f"export incomplete: {location} does not match its checksum in {where} "
                                       "(truncated or still being written): refused, nothing was read")
        if f.rows is not None:
            rows = count_rows(location)
            if rows is None:
                raise ExportIncomplete(f"export incomplete: {location}, named in {where}, is missing")
            if rows != f.rows:
                raise ExportIncomplete(f"export incomplete: {location} holds {rows:,} rows, {where} says "
                                       f"{f.rows:,}: refused, nothing was read")


def count_rows(location: str) -> int | None:
    """Records in one Parquet, CSV (header excluded) or NDJSON file; None when it does not exist."""
    import polars as pl

    if not _remote(location) and not Path(location).is_file():
        return None
    options = _polars_options(location)
    suffix = location.rsplit(".", 1)[-1].lower()
    try:
        if suffix == "parquet":
            frame = pl.scan_parquet(location, storage_options=options)
        elif suffix == "csv":
            frame = pl.scan_csv(location, storage_options=options, infer_schema=False)
        elif suffix in ("ndjson", "jsonl", "json"):
            frame = pl.scan_ndjson(location, storage_options=options, infer_schema_length=1)
        else:
            raise ExportIncomplete(f"{location}: rows are counted in .parquet, .csv and .ndjson files only: "
                                   "leave `rows` out of its manifest entry")
        return int(frame.select(pl.len()).collect().item())
    except (pl.exceptions.ComputeError, OSError, FileNotFoundError) as exc:
        if _remote(location) and "not found" in str(exc).lower():
            return None
        raise ExportIncomplete(f"export incomplete: {location} could not be read to count its rows "
                               f"({type(exc).__name__}): refused") from None


def manifest_digest(files: tuple[ManifestFile, ...]) -> str | None:
    """A fingerprint of the export's content from its manifest (paths, rows, checksums), independent of where
    the export was copied to; None without checksums (then the source's own fingerprint serves)."""
    if not files or any(f.sha256 is None for f in files):
        return None
    digest = hashlib.sha256()
    for f in sorted(files, key=lambda f: f.path):
        digest.update(f"{f.path}\t{f.rows}\t{f.sha256.lower()}\n".encode())
    return "manifest:" + digest.hexdigest()


def _sha256(location: str) -> str | None:
    digest = hashlib.sha256()
    if not _remote(location):
        path = Path(location)
        if not path.is_file():
            return None
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        return digest.hexdigest()
    chunks = _store_stream(location)
    if chunks is None:
        return None
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


def _remote(location: str) -> bool:
    return "://" in location


def _join(source: str, name: str) -> str:
    return source.rstrip("/") + "/" + name if _remote(source) else str(Path(source) / name)


def _duration(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 3600} h {s % 3600 // 60:02d} min" if s >= 3600 else f"{s // 60} min {s % 60:02d} s" if s >= 60 \
        else f"{s} s"


def _store(location: str):
    from obstore.store import from_url

    from connectors.objectstore import RETRY, resolve_options, scheme_of, split

    scheme = scheme_of(location)
    options = resolve_options(scheme, None, os.environ)
    _, bucket, key = split(location)
    store = from_url(f"{scheme}://{bucket}", config=options.config,
                     client_options={"allow_http": True} if _allow_http(options) else None, retry_config=RETRY)
    return store, key, options


def _allow_http(options) -> bool:
    # An endpoint given by the environment (a local MinIO, the tests' store) may be plain http.
    return options.allow_http or os.environ.get("AWS_ALLOW_HTTP", "").lower() == "true" or any(
        str(v).startswith("http://") for v in options.config.values())


def _polars_options(location: str) -> dict[str, str] | None:
    if not _remote(location):
        return None
    _, _, options = _store(location)
    return options.polars()


def _store_get(location: str, *, missing_ok: bool) -> bytes | None:
    chunks = _store_stream(location)
    if chunks is None:
        if missing_ok:
            return None
        raise ExportIncomplete(f"{location} is missing")
    return b"".join(chunks)


def _store_stream(location: str) -> Iterator[bytes] | None:
    import obstore
    import obstore.exceptions

    from connectors.objectstore import explain

    store, key, options = _store(location)
    try:
        result = obstore.get(store, key)
    except FileNotFoundError:
        return None
    except (obstore.exceptions.BaseError, OSError, ValueError) as exc:
        if "not found" in str(exc).lower():
            return None
        raise explain(exc, location, options, "read") from None
    return (bytes(chunk) for chunk in result.stream())
