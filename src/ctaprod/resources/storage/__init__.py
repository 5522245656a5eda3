"""Storage element plugins and the registry that builds them from configuration.

A plugin is a factory ``(name, StorageElementConfig) -> StorageElement`` registered under
the value of ``StorageElementConfig.plugin``: ``posix``, ``xrootd`` and ``s3`` are built in
(the last two import their client library only when such an SE is built); others are added
with :func:`register_storage_plugin` (or an entry in ``STORAGE_PLUGINS``).
"""

from __future__ import annotations

from collections.abc import Callable

from ctaprod.core.errors import InvalidInput
from ctaprod.core.settings import StorageElementConfig
from ctaprod.resources.storage.base import StorageElement, adler32_of, normalise_path
from ctaprod.resources.storage.posix import PosixStorageElement

__all__ = [
    "STORAGE_PLUGINS",
    "PosixStorageElement",
    "StorageElement",
    "StorageFactory",
    "adler32_of",
    "create_storage_element",
    "normalise_path",
    "register_storage_plugin",
]

StorageFactory = Callable[[str, StorageElementConfig], StorageElement]


def _posix(name: str, config: StorageElementConfig) -> StorageElement:
    if not config.base_path:
        raise InvalidInput(f"storage element {name}: the posix plugin needs a base_path", se=name)
    return PosixStorageElement(name, config.base_path)


def _xrootd(name: str, config: StorageElementConfig) -> StorageElement:
    # Imported here: the XRootD client library is only needed when such an SE is built.
    from ctaprod.resources.storage.xrootd import XRootDStorageElement

    return XRootDStorageElement.from_config(name, config)


def _s3(name: str, config: StorageElementConfig) -> StorageElement:
    # Imported here: boto3 is only needed when such an SE is built.
    from ctaprod.resources.storage.s3 import S3StorageElement

    return S3StorageElement.from_config(name, config)


STORAGE_PLUGINS: dict[str, StorageFactory] = {"posix": _posix, "xrootd": _xrootd, "s3": _s3}


def register_storage_plugin(plugin: str, factory: StorageFactory) -> None:
    """Make ``factory`` build the storage elements whose config says ``plugin=<plugin>``."""
    STORAGE_PLUGINS[plugin.lower()] = factory


def create_storage_element(name: str, config: StorageElementConfig) -> StorageElement:
    """Build the storage element ``name`` with the plugin its configuration names."""
    factory = STORAGE_PLUGINS.get(config.plugin.lower())
    if factory is None:
        known = ", ".join(sorted(STORAGE_PLUGINS))
        raise InvalidInput(
            f"storage element {name}: unknown plugin {config.plugin!r} (known: {known})",
            se=name,
            plugin=config.plugin,
        )
    return factory(name, config)
