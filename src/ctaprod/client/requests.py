"""Client methods of the requests routes (mixed into :class:`ctaprod.client.http.Client`)."""

from __future__ import annotations

from ctaprod.client.base import ClientBase


class RequestsAPI(ClientBase):
    """Requests calls."""
