"""Scan a local export folder into one lazy frame per dataset; no business logic.

A folder holds up to four datasets (`users`, `purchases`, `events`, `push_tokens`), each one file
(`users.parquet`) or a folder of parts (`purchases/part-0001.csv`, also nested `date=.../part.parquet`),
in Parquet, CSV or NDJSON. Every frame carries `_file` (the file's path) and `_row` (1-based record number
in that file, header excluded) so a reject can name its origin. CSV is read as text: typing is
`transforms.csv_typing`'s job. Files that are no dataset (a README, `_SUCCESS`, `.crc`) are ignored and
listed by `ignored_files`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import polars as pl

DATASETS = ("users", "purchases", "events", "push_tokens")
FORMATS: dict[str, Literal["parquet", "csv", "ndjson"]] = {
    ".parquet": "parquet",
    ".csv": "csv",
    ".ndjson": "ndjson",
    ".jsonl": "ndjson",
}
ORIGIN_COLUMNS = ("_file", "_row")


class SourceError(Exception):
    """A source folder or file cannot be read as an export; the message says which and what to do."""


@dataclass(frozen=True)
class Dataset:
    """One dataset of a source: its lazy frame, its format and the files it reads, in order."""

    name: str
    frame: pl.LazyFrame
    format: Literal["parquet", "csv", "ndjson"]
    files: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Layout:
    datasets: dict[str, tuple[str, list[Path]]]
    ignored: list[Path]


def scan_folder(path: str | Path) -> dict[str, Dataset]:
    """Return the datasets present in `path`, keyed by name; absent datasets are left out.

    Each file's schema is read here (Parquet footer, CSV header, NDJSON records), so a file that is not
    what its extension says fails now with a `SourceError` naming it, not later in a transform.
    """
    layout = _discover(Path(path))
    return {
        name: Dataset(name, _scan_files(name, fmt, files), fmt, [str(f) for f in files])
        for name, (fmt, files) in layout.datasets.items()
    }


def ignored_files(path: str | Path) -> list[str]:
    """Files under `path` that `scan_folder` does not read (not a dataset, or not a data file)."""
    return [str(p) for p in _discover(Path(path)).ignored]


def source_fingerprint(path: str | Path) -> str:
    """A stable hash of the data files' relative names, sizes and modification times.

    A resumed run compares it with the fingerprint of the run it resumes: a changed export means the
    stored plan no longer describes the source.
    """
    root = Path(path)
    digest = hashlib.sha256()
    for name, (fmt, files) in sorted(_discover(root).datasets.items()):
        for f in files:
            st = f.stat()
            digest.update(
                f"{name}\t{fmt}\t{f.relative_to(root).as_posix()}\t{st.st_size}\t{st.st_mtime_ns}\n".encode()
            )
    return digest.hexdigest()


@contextmanager
def reading(dataset: Dataset) -> Iterator[None]:
    """Turn a Polars read error raised while collecting `dataset` into a `SourceError` naming its files.

    Schemas are checked by `scan_folder`; a record broken deep inside a file only shows when it is read.
    """
    try:
        yield
    except (pl.exceptions.ComputeError, pl.exceptions.NoDataError, OSError) as err:
        raise SourceError(
            f"could not read dataset {dataset.name!r} ({_file_list(dataset.files)}): {_first_line(err)}. "
            f"Check that every file is a complete {dataset.format} export (same columns in every part) "
            f"and export it again."
        ) from err


def _discover(root: Path) -> _Layout:
    if not root.exists():
        raise SourceError(f"source folder {root} does not exist: pass the folder that holds the export")
    if not root.is_dir():
        raise SourceError(
            f"source {root} is not a folder: pass the folder that holds users.*, purchases.*, ..."
        )
    found: dict[str, list[tuple[str, list[Path]]]] = {}
    ignored: list[Path] = []
    for entry in sorted(root.iterdir()):
        if _hidden(entry.name):
            continue
        if entry.is_dir() and entry.name in DATASETS:
            found.setdefault(entry.name, []).append(_parts(entry, ignored))
        elif entry.is_file() and _dataset_of(entry) is not None:
            found.setdefault(_dataset_of(entry), []).append((_format_of(entry), [entry]))
        else:
            ignored.extend(_all_files(entry))
    datasets = {}
    for name, candidates in sorted(found.items(), key=lambda kv: DATASETS.index(kv[0])):
        if len(candidates) > 1:
            listed = ", ".join(str(f) for _, files in candidates for f in files[:1])
            raise SourceError(
                f"dataset {name!r} is exported more than once in {root} ({listed}): keep one file or one folder"
            )
        datasets[name] = candidates[0]
    return _Layout(datasets, ignored)


def _parts(folder: Path, ignored: list[Path]) -> tuple[str, list[Path]]:
    parts = []
    for f in _all_files(folder):
        if f.suffix.lower() in FORMATS:
            parts.append(f)
        else:
            ignored.append(f)
    if not parts:
        raise SourceError(
            f"dataset folder {folder} holds no .parquet, .csv, .ndjson or .jsonl part: "
            f"export the parts into it, or remove the folder if the dataset is absent"
        )
    formats = sorted({FORMATS[f.suffix.lower()] for f in parts})
    if len(formats) > 1:
        raise SourceError(
            f"dataset folder {folder} mixes formats ({', '.join(formats)}): export every part in one format"
        )
    return formats[0], parts


def _all_files(entry: Path) -> list[Path]:
    if entry.is_file():
        return [entry]
    return sorted(
        p
        for p in entry.rglob("*")
        if p.is_file() and not any(_hidden(part) for part in p.relative_to(entry).parts)
    )


def _dataset_of(f: Path) -> str | None:
    name, ext = os.path.splitext(f.name)
    if name not in DATASETS:
        return None
    if ext.lower() not in FORMATS:
        raise SourceError(
            f"{f}: {ext or 'no extension'} is not a supported format: export {name} as .parquet, .csv or .ndjson"
        )
    return name


def _format_of(f: Path) -> Literal["parquet", "csv", "ndjson"]:
    return FORMATS[f.suffix.lower()]


def _hidden(name: str) -> bool:
    return name.startswith((".", "_"))


def _scan_files(name: str, fmt: str, files: list[Path]) -> pl.LazyFrame:
    frames = [_scan_one(f, fmt) for f in files]
    return frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")


def _scan_one(f: Path, fmt: str) -> pl.LazyFrame:
    try:
        if fmt == "parquet":
            lf = pl.scan_parquet(f)
        elif fmt == "csv":
            lf = pl.scan_csv(f, infer_schema=False, encoding="utf8")
        else:
            lf = pl.scan_ndjson(f, infer_schema_length=None)
        schema = lf.collect_schema()
    except (pl.exceptions.PolarsError, OSError) as err:
        raise SourceError(
            f"{f}: not a readable {fmt} file ({_first_line(err)}): check the export finished and re-export it"
        ) from err
    clash = [c for c in ORIGIN_COLUMNS if c in schema]
    if clash:
        raise SourceError(f"{f}: column {clash[0]!r} is reserved for the pipeline: rename it in the export")
    return (
        lf.with_row_index("_row", offset=1)
        .with_columns(pl.col("_row").cast(pl.Int64), pl.lit(str(f), dtype=pl.String).alias("_file"))
        .select(pl.exclude(ORIGIN_COLUMNS), *ORIGIN_COLUMNS)
    )


def _file_list(files: list[str]) -> str:
    shown = ", ".join(files[:3])
    return shown if len(files) <= 3 else f"{shown} and {len(files) - 3} more"


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:200]
