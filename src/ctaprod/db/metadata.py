"""Metadata fields and values on directories and files; compiled metadata queries."""

from __future__ import annotations


class MetadataDB:
    """Typed metadata on directories (own + effective) and files. Methods never commit."""
