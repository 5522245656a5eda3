"""File catalog: directories, files, replicas, ancestry, catalog events (bulk-first)."""

from __future__ import annotations


class CatalogDB:
    """Directory tree, files, replicas and ancestry. Methods never commit."""
