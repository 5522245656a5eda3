"""Storage element status: read/write bans and their history."""

from __future__ import annotations


class StorageDB:
    """Run-time status of storage elements. Methods never commit."""
