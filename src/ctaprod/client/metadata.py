"""Client methods of the metadata routes (mixed into :class:`ctaprod.client.http.Client`)."""

from __future__ import annotations

from ctaprod.client.base import ClientBase


class MetadataAPI(ClientBase):
    """Metadata calls."""
