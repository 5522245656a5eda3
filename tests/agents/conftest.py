"""Fixtures of the agent tests."""

from __future__ import annotations

from typing import Any

import pytest

from tests.agents.helpers import World


@pytest.fixture
def world(services: Any) -> World:
    return World(services)
