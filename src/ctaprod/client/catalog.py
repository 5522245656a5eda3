"""Client methods of the catalog routes (mixed into :class:`ctaprod.client.http.Client`)."""

from __future__ import annotations

from ctaprod.client.base import ClientBase


class CatalogAPI(ClientBase):
    """Catalog calls."""
