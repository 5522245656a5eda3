"""Metadata routes."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/metadata", tags=["metadata"])
