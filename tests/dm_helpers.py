"""Settings shared by the data-management tests: the test database, a private state
directory, and storage elements (POSIX ones under ``tmp_path``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ctaprod.core.settings import DataSettings, Settings, StorageElementConfig

SECRET = "test-secret-" + "x" * 40


def make_settings(db_url: str, tmp_path: Path, **fields: Any) -> Settings:
    """Settings on the test database with the state in ``tmp_path``; ``fields`` add to them
    (``storage_elements``, ``data``...)."""
    fields.setdefault("extensions", [])  # as tests/conftest.py's settings: none by default
    return Settings(state_dir=tmp_path / "state", database_url=db_url, secret_key=SECRET, **fields)


def posix_se(base: Path, site: str = "") -> StorageElementConfig:
    """A POSIX storage element stored under ``base``."""
    return StorageElementConfig(plugin="posix", base_path=str(base), site=site)


def data_settings(db_url: str, tmp_path: Path, policy: dict[str, str] | None = None) -> Settings:
    """SE-A at site A, SE-B at site B, SE-B2 at site B, SE-X without a site, a failover SE;
    input-data ``policy`` by job type (default: MC requires its data's sites)."""
    sites = {"SE-A": "A", "SE-B": "B", "SE-B2": "B", "SE-X": "", "FAILOVER": "F"}
    return make_settings(
        db_url,
        tmp_path,
        storage_elements={
            name: posix_se(tmp_path / "se" / name, site) for name, site in sites.items()
        },
        data=DataSettings(
            se_groups={"failover": ["FAILOVER"]},
            input_data_policy=policy or {"MC": "require"},
            verify_registration=False,
        ),
    )
