"""The SOURCE argument and --mapping flag, and the checks that refuse a bad one before Prefect starts."""

from __future__ import annotations

import argparse
from pathlib import Path

from braze_migrate.settings import ConfigError
from connectors.errors import SourceError
from connectors.mapping import load_mapping
from connectors.objectstore import scheme_of
from connectors.sources import is_mapping_file


def add_source_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="export folder, object-store URI (s3://, gs://, az://) or mapping file")
    p.add_argument("--mapping", metavar="FILE",
                   help="mapping file for a folder or URI source: where each dataset is and how its columns "
                        "map onto the export contract (docs/sources.md)")


def require_source(source: str, mapping: str | None = None) -> None:
    """Refuse a missing source or mapping file and check the mapping file's own content now, before Prefect
    starts; its columns are checked against the data when the run plans."""
    try:
        remote = scheme_of(source) is not None
    except SourceError as exc:
        raise ConfigError(str(exc)) from None
    if not remote and not Path(source).exists():
        raise ConfigError(f"source {source!r} does not exist: pass an export folder (data/samples/day1), "
                          "an object-store URI (s3://bucket/prefix/) or a mapping file (acme.yaml)")
    if mapping is not None and not Path(mapping).is_file():
        raise ConfigError(f"mapping file {mapping!r} does not exist")
    if mapping is not None and is_mapping_file(source):
        raise ConfigError(f"{source} is itself a mapping file: drop --mapping")
    if mapping is not None or is_mapping_file(source):
        load_mapping(mapping or source)
