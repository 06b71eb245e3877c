"""Errors of the source edge, in a module of their own so `sources`, `mapping`, `objectstore` and `sql` can
all raise them without importing each other back."""

from __future__ import annotations


class SourceError(Exception):
    """A source folder or file cannot be read as an export; the message says which and what to do."""
