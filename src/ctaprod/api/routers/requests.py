"""Requests routes."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/requests", tags=["requests"])
