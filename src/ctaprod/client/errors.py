"""Errors the client raises: the server's JSON error, or the server being unreachable."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """The server answered with an error status; ``message`` is its explanation."""

    def __init__(self, status: int, code: str, message: str, detail: Any = None) -> None:
        super().__init__(f"{message} (HTTP {status})")
        self.status = status
        self.code = code
        self.message = message
        self.detail = detail or {}


class ServerUnreachable(Exception):
    """No answer from the server (connection refused, timeout)."""
