"""Open a source — a local folder, an object-store prefix, or a mapping file — as one lazy frame per dataset.

A folder or prefix holds up to four datasets (`users`, `purchases`, `events`, `push_tokens`), each one file
(`users.parquet`) or a folder of parts (`purchases/part-0001.csv`, also nested `date=.../part.parquet`), in
Parquet, CSV or NDJSON; the same layout rules hold locally and on `s3://`, `gs://` and `az://`. A mapping
file (`connectors.mapping`) can say where each dataset is instead (a path, URI or glob, or a SQL query,
spooled to local Parquet by `connectors.sql`) and how the warehouse's columns map onto the export contract.
Every frame carries `_file` (the file's path or URI, `sql:<dataset>` for a query) and `_row` (1-based record
number in that file or query result, header excluded) so a reject can name its origin. CSV is read as text:
typing is `transforms.csv_typing`'s job, except for the columns a mapping file types. No business logic.

`iter_batches(dataset, rows)` reads the same rows as the frame in bounded batches (also inside one Parquet
row group): the planner spools a dataset that way, so memory follows a batch, not the largest file.

`SourceError` lives in `connectors.errors` (re-exported here); `connectors.mapping`, `.objectstore` and `.sql`
are imported inside the functions that use them, which keeps a local scan free of psycopg and obstore.
"""

from __future__ import annotations

import contextlib
import errno
import glob as globbing
import gzip
import hashlib
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from collections.abc import Mapping as MappingABC
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import unquote

import polars as pl

from connectors.errors import SourceError
from transforms.nested import KEYED_ARRAY

if TYPE_CHECKING:
    from connectors.mapping import DatasetMap, Mapping
    from connectors.objectstore import StoreOptions
    from connectors.sql import Query

# user_deletes: braze_migrate/ops/deletes.py; order_refunds, order_cancellations: eCommerce events (transforms/ecommerce.py);
# identifies, external_id_renames: braze_migrate/ops/identities.py
DATASETS = ("users", "purchases", "events", "push_tokens", "user_deletes", "order_refunds", "order_cancellations",
            "identifies", "external_id_renames")
FORMATS: dict[str, Literal["parquet", "csv", "ndjson"]] = {
    ".parquet": "parquet",
    ".csv": "csv",
    ".ndjson": "ndjson",
    ".jsonl": "ndjson",
}
ORIGIN_COLUMNS = ("_file", "_row")
# Braze catalogs (braze_migrate catalog sync): `catalogs/<name>.<ext>` or `catalogs/<name>/` parts in a folder,
# or `catalogs: {<name>: ...}` in a mapping file, are the dataset `catalogs/<name>`.
CATALOGS = "catalogs/"
# Compressed parts Polars reads as they are (CSV and NDJSON); Parquet compresses inside, never as .gz.
COMPRESSED = ".gz"
MAPPING_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class Dataset:
    """One dataset of a source: its lazy frame, its format and the files it reads, in order.

    `typed` names the columns whose type a mapping file declares: CSV typing must leave them as they are.
    `reader(rows)` yields the same rows as `frame`, in order, at most `rows` at a time (see `iter_batches`).
    """

    name: str
    frame: pl.LazyFrame
    format: Literal["parquet", "csv", "ndjson"]
    files: list[str] = field(default_factory=list)
    typed: tuple[str, ...] = ()
    reader: Callable[[int], Iterator[pl.DataFrame]] | None = field(default=None, compare=False, repr=False)


def iter_batches(dataset: Dataset, rows: int) -> Iterator[pl.DataFrame]:
    """The rows of `dataset` in order, in batches of at most about `rows` rows, each with the columns and types
    of `dataset.frame`: memory holds one batch whatever the size of one file or one Parquet row group.

    Local Parquet is read with pyarrow batch by batch, also inside a row group; CSV and NDJSON are parsed by
    Polars in blocks cut at record ends; an object-store file is first streamed to a temporary local file. A
    dataset made without a reader (none here) falls back to Polars' streaming engine, which is not bounded.
    """
    schema = dataset.frame.collect_schema()
    raw = dataset.reader(rows) if dataset.reader is not None else _streamed(dataset.frame, rows)
    for batch in raw:
        for offset in range(0, batch.height, rows):  # CSV and NDJSON blocks are cut by bytes: cut them by rows
            yield conform(batch.slice(offset, rows), schema)


def conform(batch: pl.DataFrame, schema: pl.Schema) -> pl.DataFrame:
    """`batch` with exactly the columns of `schema`, in its order and types (a part without a column of another
    part gets it as nulls, as the whole dataset's diagonal concatenation does)."""
    return batch.select(
        (pl.col(c) if c in batch.columns else pl.lit(None)).cast(dtype).alias(c) for c, dtype in schema.items()
    )


@dataclass(frozen=True)
class _Layout:
    """Datasets found in a folder or prefix (format, files, their folder or None), ignored files, and
    per dataset the listing entries (name, size, entity tag) a fingerprint needs (object stores only)."""

    datasets: dict[str, tuple[str, list[str], str | None]]
    ignored: list[str]
    stamps: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class _Located:
    """Where one dataset is: its files in one format (`root`: where partition folders start), or a query."""

    name: str
    format: str = "parquet"
    files: list[str] = field(default_factory=list)
    root: str | None = None
    stamps: list[str] = field(default_factory=list)
    query: Query | None = None


@dataclass(frozen=True)
class _Resolved:
    mapping: Mapping | None
    located: dict[str, _Located]
    options: dict[str, StoreOptions]


def open_source(
    source: str | Path,
    *,
    mapping: str | Path | None = None,
    work_dir: Path,
    environ: MappingABC[str, str] | None = None,
) -> dict[str, Dataset]:
    """Return the datasets of `source`, keyed by name in contract order; absent datasets are left out.

    `source` is a local folder, an object-store prefix (`s3://bucket/exports/2026-11-27/`), or a mapping
    file (`.yaml`) whose datasets say where each is. `mapping` is a mapping file for a folder or prefix
    source. Everything is checked before any data is read in full: the mapping file, the environment
    variables it names, every dataset's location and columns (Parquet footers, CSV headers, query
    descriptions). SQL datasets are then spooled to Parquet parts under `work_dir`, which must outlive
    the frames. Credentials come from the environment (`environ`, default `os.environ`).
    """
    from connectors import sql

    resolved = _resolve(str(source), mapping, os.environ if environ is None else environ)
    frames = {name: _scan_files(loc, resolved) for name, loc in resolved.located.items() if loc.query is None}
    schemas = {
        name: frames[name].collect_schema() if loc.query is None else sql.describe(loc.query)
        for name, loc in resolved.located.items()
    }
    _check_columns(resolved, schemas)
    out = {}
    for name, loc in resolved.located.items():
        if loc.query is not None:
            parts = sql.spool(loc.query, Path(work_dir) / "sql" / name)
            frames[name] = _with_origin(pl.scan_parquet(parts), loc.files[0])
            reader = _parts_reader(parts, loc.files[0])
        else:
            reader = _reader(loc, resolved)
        out[name] = _mapped(name, loc, frames[name], resolved.mapping, reader)
    return out


def catalog_names(source: str | Path, *, mapping: str | Path | None = None,
                  environ: MappingABC[str, str] | None = None) -> list[str]:
    """The catalogs (`catalogs/<name>`) a source holds, from its listing and mapping file; no data is read."""
    resolved = _resolve(str(source), mapping, os.environ if environ is None else environ)
    return [name for name in resolved.located if name.startswith(CATALOGS)]


def scan_folder(path: str | Path) -> dict[str, Dataset]:
    """Return the datasets present in local folder `path`, keyed by name; absent datasets are left out.

    Each file's schema is read here (Parquet footer, CSV header, NDJSON records), so a file that is not
    what its extension says fails now with a `SourceError` naming it, not later in a transform.
    """
    layout = _discover(Path(path))
    return {
        name: Dataset(
            name,
            _concat([_scan_one(f, fmt, dataset=name) for f in files]),
            fmt,
            list(files),
            reader=_reader(_Located(name, fmt, list(files)), _Resolved(None, {}, {})),
        )
        for name, (fmt, files, _) in layout.datasets.items()
    }


def ignored_files(path: str | Path) -> list[str]:
    """Files under `path` that `scan_folder` does not read (not a dataset, or not a data file)."""
    return list(_discover(Path(path)).ignored)


@dataclass(frozen=True)
class Unread:
    """A file of the source that no dataset reads, and why: it is named in the run summary (a warning, or
    an error under `--strict`) so that nothing in an export folder is skipped without a word."""

    path: str
    reason: str


def unread_files(
    source: str | Path, *, mapping: str | Path | None = None, environ: MappingABC[str, str] | None = None
) -> list[Unread]:
    """Files in the source's folder or prefix that the run does not read, with the reason; [] for SQL."""
    m, base = _mapping_and_base(str(source), mapping)
    if base is None:
        return []
    specs = m.model.specs() if m is not None else {}
    declared = {n: d.format for n, d in specs.items() if d.format and d.path is None and d.query is None}
    if _scheme(base):
        options = _store_options(m, {_scheme(base)}, os.environ if environ is None else environ)
        layout = _discover_remote(base, options, declared)
    else:
        layout = _discover(Path(base), declared)
    elsewhere = {n for n, d in specs.items() if d.path is not None or d.query is not None}
    read_elsewhere = [
        Unread(f, f"the mapping file reads {name} from elsewhere")
        for name, (_, files, _) in layout.datasets.items() if name in elsewhere for f in files
    ]
    return read_elsewhere + [Unread(f, _why_unread(f, base)) for f in layout.ignored]


def _why_unread(f: str, base: str) -> str:
    """The reason a file of the folder is not read."""
    rel = _relative(f, base)
    top = rel.split("/", 1)[0]
    stem, ext, _ = _split_name(rel.rsplit("/", 1)[-1])
    if "/" in rel and _canonical(top) is not None:
        return f"{ext or 'no extension'} is not a data format (.parquet, .csv, .ndjson, .jsonl, optionally .gz)"
    known = ", ".join(DATASETS)
    return f"{(top if '/' in rel else stem)!r} is not a dataset of the export ({known})"


def is_mapping_file(source: str | Path) -> bool:
    """Whether `source` names a mapping file (a local `.yaml`/`.yml` file) rather than the data itself."""
    text = str(source)
    return _scheme(text) is None and text.lower().endswith(MAPPING_SUFFIXES) and Path(text).is_file()


def source_fingerprint(
    source: str | Path, mapping: str | Path | None = None, *, environ: MappingABC[str, str] | None = None
) -> str:
    """A stable hash of what the source is, without reading its data.

    Files: relative names, sizes and modification times (local) or entity tags (object stores); SQL:
    the queries and where they run (password masked); plus the mapping file's content. A resumed run
    compares it with the fingerprint of the run it resumes: a changed export means the stored plan no
    longer describes the source.
    """
    text = str(source)
    if mapping is None and _scheme(text) is None and not is_mapping_file(text):
        return _folder_fingerprint(Path(text))
    resolved = _resolve(text, mapping, os.environ if environ is None else environ)
    digest = hashlib.sha256()
    if resolved.mapping is not None:
        digest.update(f"mapping\t{resolved.mapping.digest}\n".encode())
    for name, loc in resolved.located.items():
        if loc.query is not None:
            digest.update(f"{name}\tsql\t{loc.query.where}\t{loc.query.sql}\n".encode())
        else:
            stamps = loc.stamps or [_local_stamp(f) for f in loc.files]
            for stamp in stamps:
                digest.update(f"{name}\t{loc.format}\t{stamp}\n".encode())
    return digest.hexdigest()


@contextmanager
def reading(dataset: Dataset) -> Iterator[None]:
    """Turn a Polars read error raised while collecting `dataset` into a `SourceError` naming its files.

    Schemas are checked when a source is opened; a record broken deep inside a file only shows when read.
    """
    try:
        yield
    except (pl.exceptions.ComputeError, pl.exceptions.NoDataError, OSError) as err:
        from connectors.state.private import unusable

        state_problem = unusable(err)
        if state_problem is not None and not (isinstance(err, OSError) and err.filename in dataset.files):
            raise state_problem from None  # writing the plan failed: the export is not what is wrong
        raise SourceError(
            f"could not read dataset {dataset.name!r} ({_file_list(dataset.files)}): {_no_values(_first_line(err))}. "
            f"Check that every file is a complete {dataset.format} export (same columns in every part) "
            f"and export it again."
        ) from None


# --- resolving where each dataset is -------------------------------------------------------------------


def _resolve(source: str, mapping: str | Path | None, environ: MappingABC[str, str]) -> _Resolved:
    """The mapping (checked), each dataset's location and the store options; lists, reads no data."""
    m, base = _mapping_and_base(source, mapping)
    if m is not None:
        m.require_env(environ)
    specs = m.model.specs() if m is not None else {}
    locations = ([base] if base is not None else []) + [
        _join(base, d.path, m) for d in specs.values() if d.path
    ]
    schemes = {s for s in map(_scheme, locations) if s}
    options = _store_options(m, schemes, environ)
    layout = None
    if base is not None:
        declared = {n: d.format for n, d in specs.items() if d.format and d.path is None and d.query is None}
        layout = (
            _discover_remote(base, options, declared) if _scheme(base) else _discover(Path(base), declared)
        )
    located: dict[str, _Located] = {}
    catalogs = sorted({n for n in [*specs, *(layout.datasets if layout else ())] if n.startswith(CATALOGS)})
    for name in (*DATASETS, *catalogs):
        spec = specs.get(name)
        if spec is not None and spec.query is not None:
            located[name] = _Located(
                name, "parquet", [f"sql:{name}"], query=_query(m, name, spec.query, environ)
            )
        elif spec is not None and spec.path is not None:
            located[name] = _locate(name, _join(base, spec.path, m), spec.format, options, m)
        elif layout is not None and name in layout.datasets:
            fmt, files, root = layout.datasets[name]
            located[name] = _Located(name, fmt, files, root, layout.stamps.get(name, []))
        elif spec is not None:
            where = f"in {base}" if base is not None else "anywhere: the mapping names no source"
            message = f"dataset {name!r} is not found {where}; give it a path or a query, or remove it"
            raise m.error([(_section(name), message)])
    if not located:
        raise SourceError(
            f"source {source} holds no dataset: expected {', '.join(DATASETS)} "
            f"(as files, folders of parts, or datasets of a mapping file)"
        )
    return _Resolved(m, located, options)


def _mapping_and_base(source: str, mapping: str | Path | None) -> tuple[Mapping | None, str | None]:
    """The checked mapping file, if any, and the folder or prefix where datasets are found by name."""
    from connectors.mapping import load_mapping

    if not is_mapping_file(source):
        return (load_mapping(mapping) if mapping is not None else None), source
    if mapping is not None:
        raise SourceError(
            f"{source} is itself a mapping file: pass --mapping only with a folder or object-store source"
        )
    m = load_mapping(source)
    base = m.model.source
    if base is not None and _scheme(base) is None and not Path(base).is_absolute():
        base = str(m.file.parent / base)
    return m, base


def _store_options(m: Mapping | None, schemes: set[str], environ) -> dict[str, StoreOptions]:
    if not schemes:
        return {}
    from connectors.objectstore import resolve_options, unused_options

    storage = m.model.storage if m is not None else None
    if m is not None:
        unused = unused_options(storage, schemes)
        if unused:
            used = ", ".join(sorted(schemes))
            raise m.error(
                [(("storage", o), f"storage.{o} does not apply to {used}:// sources") for o in unused]
            )
    return {s: resolve_options(s, storage, environ) for s in schemes}


def _check_columns(resolved: _Resolved, schemas: dict[str, pl.Schema]) -> None:
    """Every problem of the mapping against the datasets' real columns, at once, or nothing."""
    m = resolved.mapping
    if m is None:
        return
    from connectors.mapping import check_columns

    problems = [
        p
        for name, loc in resolved.located.items()
        for p in check_columns(m, name, schemas[name], _file_list(loc.files))
    ]
    if problems:
        raise m.error(problems)


def _mapped(name: str, loc: _Located, frame: pl.LazyFrame, m: Mapping | None, reader) -> Dataset:
    spec = m.model.specs().get(name) if m is not None else None
    if spec is None:
        return Dataset(name, frame, loc.format, loc.files, reader=reader)
    from connectors.mapping import apply_mapping, typed_columns

    def mapped(rows: int) -> Iterator[pl.DataFrame]:
        for batch in reader(rows):
            yield apply_mapping(spec, batch.lazy()).collect()

    typed = typed_columns(spec, frame.collect_schema())
    return Dataset(name, apply_mapping(spec, frame), loc.format, loc.files, typed, reader=mapped)


def _query(m: Mapping, name: str, sql_text: str, environ) -> Query:
    from connectors.sql import Query

    env_name = m.connection_env(name)
    return Query(
        name, sql_text.strip().rstrip(";"), environ[env_name], env_name, m.batch_size(name), str(m.file)
    )


def _join(base: str | None, path: str, m: Mapping | None) -> str:
    """A dataset path from the mapping file, made absolute against the source (or the file's folder)."""
    if _scheme(path) is not None or Path(path).is_absolute():
        return path
    if base is not None and _scheme(base) is not None:
        return base.rstrip("/") + "/" + path
    anchor = Path(base) if base is not None else (m.file.parent if m is not None else Path.cwd())
    return str(anchor / path)


def _locate(name: str, where: str, declared: str | None, options: dict, m: Mapping) -> _Located:
    """The files of a dataset given by path: one file, a folder of parts, or a glob."""
    loc = (*_section(name), "path")
    scheme = _scheme(where)
    is_glob = any(ch in where for ch in "*?[")
    if scheme is not None:
        from connectors.objectstore import list_objects

        objects = list_objects(where, options[scheme])
        listed = [(o.uri, f"{o.uri}\t{o.size}\t{o.etag}") for o in objects]
        single = len(objects) == 1 and objects[0].uri == where
    else:
        p = Path(where)
        if is_glob:
            found = sorted(f for f in globbing.glob(where, recursive=True) if Path(f).is_file())
        elif p.is_file():
            found = [where]
        elif p.is_dir():
            found = [str(f) for f in sorted(p.rglob("*")) if f.is_file()]
        else:
            raise m.error([(loc, f"{where} does not exist")])
        listed = [(f, "") for f in found]
        single = p.is_file()
    root = _glob_root(where) if is_glob else (None if single else where.rstrip("/"))
    if root is not None:
        listed = [
            (f, s) for f, s in listed if not any(_hidden(part) for part in _relative(f, root).split("/"))
        ]
    if not listed:
        raise m.error([(loc, f"{where} matches no file")])
    fmt, parts, _ = _parts_of(where, [f for f, _ in listed], declared, strict=is_glob or single)
    kept = set(parts)
    stamps = [s for f, s in listed if f in kept and s]
    return _Located(name, fmt, parts, root, stamps)


def _glob_root(pattern: str) -> str:
    cut = min(i for i in (pattern.find(c) for c in "*?[") if i >= 0)
    return pattern[: pattern.rfind("/", 0, cut)]


# --- layout: the same rules for a local folder and an object-store prefix -------------------------------


def _require_resolvable(path: Path) -> None:
    """A symbolic link that leads nowhere (dangling, or a loop) is an error naming it, never an absent file:
    a `users.csv` link whose target moved would otherwise load no users and say nothing."""
    if path.is_symlink() and not path.exists():
        try:
            path.resolve(strict=True)
            why = "does not resolve"
        except RuntimeError:
            why = "is a loop of symbolic links"
        except OSError as exc:
            why = ("is a loop of symbolic links" if exc.errno == errno.ELOOP
                   else f"points to {os.readlink(path)}, which does not exist")
        raise SourceError(f"{path}: this symbolic link {why}: fix the link (or remove it) and run again")


def _discover(root: Path, declared: dict[str, str] | None = None) -> _Layout:
    if not root.exists():
        raise SourceError(f"source folder {root} does not exist: pass the folder that holds the export")
    if not root.is_dir():
        raise SourceError(
            f"source {root} is not a folder: pass the folder that holds users.*, purchases.*, ..."
        )
    files, folders = [], set()
    try:
        for entry in root.iterdir():
            if _hidden(entry.name):
                continue
            _require_resolvable(entry)
            if entry.is_dir():
                folders.add(entry.name)
                for p in entry.rglob("*"):
                    if not any(_hidden(part) for part in p.relative_to(root).parts):
                        _require_resolvable(p)
                files.extend(p.relative_to(root).as_posix() for p in entry.rglob("*") if p.is_file())
            elif entry.is_file():
                files.append(entry.name)
    except PermissionError as err:
        raise SourceError(f"{err.filename or root}: not readable by this user: grant read access to the export") from None
    return _layout(str(root), files, folders, lambda rel: str(root / rel), declared or {})


def _discover_remote(base: str, options: dict, declared: dict[str, str]) -> _Layout:
    from connectors.objectstore import list_objects

    prefix = base.rstrip("/") + "/"
    objects = [o for o in list_objects(prefix, options[_scheme(base)]) if o.uri.startswith(prefix)]
    if not objects:
        raise SourceError(f"source {base} holds no object: check the bucket and the prefix")
    files = [o.uri[len(prefix) :] for o in objects]
    folders = {rel.split("/", 1)[0] for rel in files if "/" in rel}
    layout = _layout(base, files, folders, lambda rel: prefix + rel, declared)
    stamp = {o.uri: f"{o.uri[len(prefix) :]}\t{o.size}\t{o.etag}" for o in objects}
    stamps = {name: [stamp[part] for part in parts] for name, (_, parts, _) in layout.datasets.items()}
    return replace(layout, stamps=stamps)


def _layout(root: str, files: list[str], folders: set[str], join, declared: dict[str, str]) -> _Layout:
    """Datasets and ignored files of a folder listing (`files`: relative paths; `folders`: top-level ones)."""
    found: dict[str, list[tuple[str, list[str], str | None]]] = {}
    ignored: list[str] = []
    in_folder: dict[str, list[str]] = {}
    for rel in sorted(files, key=lambda r: tuple(r.split("/"))):
        top, _, rest = rel.partition("/")
        if _hidden(top):
            continue
        if not rest:
            name = _dataset_of(top, join(rel))
            if name is None:
                ignored.append(join(rel))
            else:
                found.setdefault(name, []).append((FORMATS[_split_name(top)[1]], [join(rel)], None))
        elif any(_hidden(part) for part in rest.split("/")):
            continue
        elif top == CATALOGS.rstrip("/"):  # catalogs/<name>.<ext>, or catalogs/<name>/ holding its parts
            name, _, inner = rest.partition("/")
            if not inner:
                stem, ext, _ = _split_name(name)
                if ext in FORMATS:
                    found.setdefault(CATALOGS + stem, []).append((FORMATS[ext], [join(rel)], None))
                else:
                    ignored.append(join(rel))
            else:
                in_folder.setdefault(f"{top}/{name}", []).append(join(rel))
        elif _canonical(top) is not None:
            in_folder.setdefault(top, []).append(join(rel))
        else:
            ignored.append(join(rel))
    for folder in sorted(f for f in in_folder if f.startswith(CATALOGS)):
        fmt, parts, skipped = _parts_of(join(folder), in_folder[folder], declared.get(folder))
        ignored.extend(skipped)
        found.setdefault(folder, []).insert(0, (fmt, parts, join(folder)))
    for top in sorted(folders):
        name = _canonical(top)
        if name is not None and not _hidden(top):
            fmt, parts, skipped = _parts_of(join(top), in_folder.get(top, []), declared.get(name))
            ignored.extend(skipped)
            found.setdefault(name, []).insert(0, (fmt, parts, join(top)))
    datasets = {}
    for name, candidates in sorted(found.items(), key=lambda kv: _rank(kv[0])):
        if len(candidates) > 1:
            listed = ", ".join(paths[0] for _, paths, _ in candidates)
            raise SourceError(
                f"dataset {name!r} is exported more than once in {root} ({listed}): "
                "keep one file or one folder"
            )
        datasets[name] = candidates[0]
    return _Layout(datasets, sorted(ignored))


def _parts_of(
    folder: str, files: list[str], declared: str | None, *, strict: bool = False
) -> tuple[str, list[str], list[str]]:
    """(format, parts, ignored) of a dataset's files: by extension, or all of them in a declared format."""
    if declared is not None:
        return declared, list(files), []
    parts, ignored = [], []
    for f in files:
        _, ext, compressed = _split_name(f)
        if ext in FORMATS and not (compressed and FORMATS[ext] == "parquet"):
            parts.append(f)
        elif strict:
            raise SourceError(
                f"{f}: {ext or 'no extension'} is not a supported format: name it .parquet, .csv "
                f"or .ndjson, or give the dataset's format in the mapping file"
            )
        else:
            ignored.append(f)
    if not parts:
        raise SourceError(
            f"dataset folder {folder} holds no .parquet, .csv, .ndjson or .jsonl part: "
            f"export the parts into it, or remove the folder if the dataset is absent"
        )
    formats = sorted({FORMATS[_split_name(f)[1]] for f in parts})
    if len(formats) > 1:
        raise SourceError(
            f"dataset folder {folder} mixes formats ({', '.join(formats)}): export every part in one format"
        )
    return formats[0], parts, ignored


def _dataset_of(filename: str, shown: str) -> str | None:
    """The dataset a top-level file holds (`Purchases.CSV`, `event.ndjson.gz`), None if it is none."""
    stem, ext, compressed = _split_name(filename)
    name = _canonical(stem)
    if name is None:
        return None
    if ext not in FORMATS:
        raise SourceError(
            f"{shown}: {ext or 'no extension'} is not a supported format: "
            f"export {name} as .parquet, .csv or .ndjson (CSV and NDJSON may be .gz)"
        )
    if compressed and FORMATS[ext] == "parquet":
        raise SourceError(f"{shown}: Parquet is compressed inside; export {name} as plain .parquet, not .gz")
    return name


def _split_name(filename: str) -> tuple[str, str, bool]:
    """(stem, lower-case data extension, gzip-compressed) of a file name: `events.ndjson.gz` → events, .ndjson."""
    base = filename.rsplit("/", 1)[-1]
    compressed = base.lower().endswith(COMPRESSED)
    if compressed:
        base = base[: -len(COMPRESSED)]
    stem, ext = os.path.splitext(base)
    return stem, ext.lower(), compressed


def _rank(name: str) -> tuple[int, str]:
    """Contract order: the fixed datasets, then catalogs by name."""
    return (DATASETS.index(name), "") if name in DATASETS else (len(DATASETS), name)


def _section(name: str) -> tuple[str, ...]:
    """Where a dataset sits in a mapping file: `datasets.<name>`, or `catalogs.<name>`."""
    return ("catalogs", name[len(CATALOGS):]) if name.startswith(CATALOGS) else ("datasets", name)


def _canonical(name: str) -> str | None:
    """The dataset a file or folder name stands for, whatever its case, singular or plural."""
    key = name.strip().lower().replace("-", "_")
    if key in DATASETS:
        return key
    if key + "s" in DATASETS:
        return key + "s"
    return None


def _hidden(name: str) -> bool:
    return name.startswith((".", "_"))


def _scheme(location: str) -> str | None:
    if "://" not in location:
        return None
    from connectors.objectstore import scheme_of

    return scheme_of(location)


def _relative(path: str, root: str) -> str:
    return path[len(root) :].lstrip("/") if path.startswith(root) else Path(path).name


def _folder_fingerprint(root: Path) -> str:
    digest = hashlib.sha256()
    for name, (fmt, files, _) in sorted(_discover(root).datasets.items()):
        for f in files:
            st = Path(f).stat()
            relative = Path(f).relative_to(root).as_posix()
            digest.update(f"{name}\t{fmt}\t{relative}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _local_stamp(f: str) -> str:
    st = Path(f).stat()
    return f"{f}\t{st.st_size}\t{st.st_mtime_ns}"


# --- scanning ------------------------------------------------------------------------------------------


def _scan_files(loc: _Located, resolved: _Resolved) -> pl.LazyFrame:
    m, options = resolved.mapping, resolved.options.get(_scheme(loc.files[0]) or "")
    spec = m.model.specs().get(loc.name) if m is not None else None
    separator = (spec.separator if spec is not None else None) or ","
    hive = spec is not None and spec.hive_columns and loc.root is not None
    frames = [
        _scan_one(
            f,
            loc.format,
            options=options,
            separator=separator,
            partitions=_partition_values(f, loc.root) if hive else None,
            spec=spec,
            dataset=loc.name,
        )
        for f in loc.files
    ]
    return _concat(frames)


def _reader(loc: _Located, resolved: _Resolved) -> Callable[[int], Iterator[pl.DataFrame]]:
    """The batches of a dataset's files, file after file, each with its origin columns (and partition values)."""
    m = resolved.mapping
    spec = m.model.specs().get(loc.name) if m is not None else None
    separator = (spec.separator if spec is not None else None) or ","
    hive = spec is not None and spec.hive_columns and loc.root is not None
    options = resolved.options.get(_scheme(loc.files[0]) or "")

    def local(path: str, label: str, rows: int) -> Iterator[pl.DataFrame]:
        partitions = _partition_values(label, loc.root) if hive else None
        if loc.format == "parquet":
            batches = parquet_batches([path], rows)
        else:
            batches = _text_batches(path, loc.format, separator, spec, loc.name)
        values = [pl.lit(v, dtype=pl.String).alias(k) for k, v in (partitions or {}).items()]
        yield from _numbered((b.with_columns(values) for b in batches), label)

    def read(rows: int) -> Iterator[pl.DataFrame]:
        for f in loc.files:
            if options is None:
                yield from local(f, f, rows)
                continue
            from connectors.objectstore import download

            # An object is streamed to a temporary local file, then read like one: one object on disk at a time.
            with tempfile.TemporaryDirectory(prefix="braze-migrate-") as tmp:
                path = download(f, options, Path(tmp) / f.rsplit("/", 1)[-1])
                yield from local(str(path), f, rows)

    return read


# Bytes of a CSV or NDJSON file parsed at a time.
TEXT_BLOCK = 8 << 20


def _text_batches(f: str, fmt: str, separator: str, spec: DatasetMap | None = None,
                  dataset: str | None = None) -> Iterator[pl.DataFrame]:
    """A local CSV or NDJSON file (optionally .gz) parsed by Polars TEXT_BLOCK bytes at a time, each block cut
    at the end of a record, so the rows and their types are those of reading the file whole: CSV as text
    under the header's column names, NDJSON with the columns inferred from the whole file."""
    head = _scan_one(f, fmt, separator=separator, spec=spec, dataset=dataset).collect_schema()
    names = [c for c in head if c not in ORIGIN_COLUMNS]
    quoted = fmt == "csv"
    opener = gzip.open if f.lower().endswith(COMPRESSED) else open
    with opener(f, "rb") as fh:
        rest = _after_header(fh) if quoted else b""
        while True:
            block = fh.read(TEXT_BLOCK)
            data = rest + block
            cut = _record_end(data, quoted=quoted) if block else len(data) - 1
            chunk, rest = data[: cut + 1], data[cut + 1 :]
            if chunk:
                with contextlib.suppress(pl.exceptions.NoDataError):
                    yield _parse(chunk, fmt, names, head, separator)
            if not block:
                return


def _after_header(fh) -> bytes:
    """Read past a CSV file's header line (its names come from the whole-file scan); the bytes read after it."""
    data = b""
    while True:
        block = fh.read(TEXT_BLOCK)
        data += block
        end = _record_end(data, quoted=True, first=True)
        if end >= 0 or not block:
            return data[end + 1 :] if end >= 0 else b""


def _record_end(data: bytes, *, quoted: bool, first: bool = False) -> int:
    """Index of the last (or `first`) newline of `data` that ends a record, outside CSV quotes; -1 if none.
    Blocks start at a record's start, so a newline is inside quotes when an odd number of quotes precede it."""
    end = data.find(b"\n") if first else data.rfind(b"\n")
    while quoted and end >= 0 and data.count(b'"', 0, end) % 2:
        end = data.find(b"\n", end + 1) if first else data.rfind(b"\n", 0, end)
    return end


def _parse(chunk: bytes, fmt: str, names: list[str], head: pl.Schema, separator: str) -> pl.DataFrame:
    if fmt == "csv":
        return pl.read_csv(chunk, has_header=False, new_columns=names, infer_schema=False, encoding="utf8",
                           separator=separator)
    return pl.read_ndjson(chunk, schema={c: head[c] for c in names})


def _parts_reader(parts: list[Path], label: str) -> Callable[[int], Iterator[pl.DataFrame]]:
    """The batches of spooled Parquet parts read as one result named `label` (a query's rows, numbered on)."""
    return lambda rows: _numbered(parquet_batches([str(p) for p in parts], rows), label)


def _streamed(lf: pl.LazyFrame, rows: int) -> Iterator[pl.DataFrame]:
    """A lazy frame run by Polars' streaming engine, `rows` rows at a time."""
    yield from lf.collect_batches(chunk_size=rows)


# Bytes pyarrow reads from a Parquet file at a time: a column chunk is read in pieces, not whole.
PARQUET_BUFFER = 1 << 22


def parquet_batches(files: list[str], rows: int) -> Iterator[pl.DataFrame]:
    """Local Parquet files `rows` rows at a time, also inside one row group."""
    import pyarrow.parquet as pq

    for f in files:
        with pq.ParquetFile(f, buffer_size=PARQUET_BUFFER) as pf:
            for rb in pf.iter_batches(batch_size=rows, use_threads=True):
                batch = pl.from_arrow(rb, rechunk=False)
                assert isinstance(batch, pl.DataFrame)
                yield batch


def _numbered(batches: Iterator[pl.DataFrame], label: str) -> Iterator[pl.DataFrame]:
    """Batches of one file (or query result) with `_file` and `_row`, numbered from 1 across the batches."""
    first = 1
    for batch in batches:
        yield batch.with_columns(
            pl.int_range(first, first + batch.height, dtype=pl.Int64).alias("_row"),
            pl.lit(label, dtype=pl.String).alias("_file"),
        )
        first += batch.height


def _concat(frames: list[pl.LazyFrame]) -> pl.LazyFrame:
    return frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")


OCCURRENCE_DATASETS = ("events", "purchases")  # their `properties` object: transforms/normalize.py _properties


def _json_text_columns(schema: pl.Schema, spec: DatasetMap | None, dataset: str | None) -> dict[str, pl.DataType]:
    """The nested NDJSON columns to read as their JSON text: Polars infers one type per column over all rows, so
    one string value would turn every row's numbers in it into strings (#21 case 8). Read as text, each row's
    value keeps its own types; the pipeline reads both columns from text: the arrays of objects by item id
    (named `pets[id]` in the export, or after the mapping's renames, or declared in its `arrays_of_objects`) and
    an event's or purchase's `properties`."""
    from connectors.mapping import final_names

    have = [c for c in schema if c not in ORIGIN_COLUMNS]
    finals = final_names(spec, have) if spec is not None else {}
    declared = spec.arrays_of_objects if spec is not None else {}
    out: dict[str, pl.DataType] = {}
    for c in have:
        final = finals.get(c) or c
        keyed = KEYED_ARRAY.match(c) or KEYED_ARRAY.match(final) or final in declared
        properties = dataset in OCCURRENCE_DATASETS and final == "properties"
        if schema[c].is_nested() and (keyed or properties):
            out[c] = pl.String
    return out


def _scan_one(
    f: str | Path,
    fmt: str,
    *,
    options: StoreOptions | None = None,
    separator: str = ",",
    partitions: dict[str, str | None] | None = None,
    spec: DatasetMap | None = None,
    dataset: str | None = None,
) -> pl.LazyFrame:
    storage = options.polars() if options is not None else None
    try:
        if fmt == "parquet":
            lf = pl.scan_parquet(f, storage_options=storage)
        elif fmt == "csv":
            lf = pl.scan_csv(
                f, infer_schema=False, encoding="utf8", separator=separator, storage_options=storage
            )
        else:
            lf = pl.scan_ndjson(f, infer_schema_length=None, storage_options=storage)
            as_text = _json_text_columns(lf.collect_schema(), spec, dataset)
            if as_text:  # kept as their JSON text, so each value keeps its own type
                lf = pl.scan_ndjson(f, infer_schema_length=None, storage_options=storage, schema_overrides=as_text)
        schema = lf.collect_schema()
    except (pl.exceptions.PolarsError, OSError) as err:
        if options is not None and _is_store_error(err):
            from connectors.objectstore import explain

            raise explain(err, str(f), options) from None
        raise SourceError(
            f"{f}: not a readable {fmt} file ({_first_line(err)}): check the export finished and re-export it"
        ) from err
    clash = [c for c in ORIGIN_COLUMNS if c in schema]
    if clash:
        raise SourceError(f"{f}: column {clash[0]!r} is reserved for the pipeline: rename it in the export")
    if partitions:
        taken = [k for k in partitions if k in schema]
        if taken:
            raise SourceError(
                f"{f}: partition column {taken[0]!r} is also a column of the file: "
                f"set hive_columns: false, or drop the column from the export"
            )
        lf = lf.with_columns(pl.lit(v, dtype=pl.String).alias(k) for k, v in partitions.items())
    return _with_origin(lf, str(f))


def _with_origin(lf: pl.LazyFrame, label: str) -> pl.LazyFrame:
    return (
        lf.with_row_index("_row", offset=1)
        .with_columns(pl.col("_row").cast(pl.Int64), pl.lit(label, dtype=pl.String).alias("_file"))
        .select(pl.exclude(ORIGIN_COLUMNS), *ORIGIN_COLUMNS)
    )


def _partition_values(f: str, root: str) -> dict[str, str | None]:
    """`key=value` folders between `root` and the file, as columns (hive partitioning; values are text)."""
    out: dict[str, str | None] = {}
    for part in _relative(f, root).split("/")[:-1]:
        key, eq, value = part.partition("=")
        if eq:
            value = unquote(value)
            out[key] = None if value == "__HIVE_DEFAULT_PARTITION__" else value
    return out


def _is_store_error(err: BaseException) -> bool:
    text = str(err)
    return isinstance(err, OSError) or "object-store" in text or "object_store" in text


def _file_list(files: list[str]) -> str:
    shown = ", ".join(files[:3])
    return shown if len(files) <= 3 else f"{shown} and {len(files) - 3} more"


def _no_values(text: str) -> str:
    """A reader's message without the cell values it quotes (`could not parse `jane@x.com` ...`): they may be
    personal data, and messages reach logs and Prefect."""
    return _QUOTED.sub("(a value)", text)


_QUOTED = re.compile(r"`[^`]*`?|\"[^\"]*\"?|'(?!Schema')[^']*'?")


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:200]
