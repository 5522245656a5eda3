"""Requests: ordered operations with per-file status (the failover path)."""

from __future__ import annotations


class RequestDB:
    """Requests, operations and files. Methods never commit."""
