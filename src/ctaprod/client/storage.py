"""Client methods of the storage routes (mixed into :class:`ctaprod.client.http.Client`)."""

from __future__ import annotations

from ctaprod.client.base import ClientBase


class StorageAPI(ClientBase):
    """Storage calls."""
