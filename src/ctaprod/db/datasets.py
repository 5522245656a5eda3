"""Datasets: named metadata queries, dynamic or frozen."""

from __future__ import annotations


class DatasetDB:
    """Datasets and the file lists of frozen ones. Methods never commit."""
