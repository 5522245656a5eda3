"""Grouping plugins: how a transformation's Unused files become the input groups of tasks.

A plugin is a pure function over file records (:class:`GroupFile`: file ID, LFN, size,
effective metadata) and a group size; it returns the full groups and the leftovers that do
not make a full group yet (they wait for more input), or, with ``flush=True``, makes the
last, smaller groups of the leftovers too (the input is complete, or an operator asked).

Every plugin is deterministic and order-independent: files are taken in file-ID order (the
catalog's registration order, so neighbouring runs stay together), whatever order they are
given in; the same files always give the same groups, which is what lets several replicas of
the task-creation agent agree. No file is in two groups, and groups + leftovers are exactly
the input (a file ID given twice is a caller's bug and raises ``ValueError``).

Built in (``PLUGINS``; more with :meth:`PluginRegistry.register`):

- **Standard**: N files per task.
- **BySize**: up to N bytes per task, files in order; a group closes when the next file
  would not fit; a file larger than N makes a task alone.
- **ByMetadata**: files that share the values of the ``group_by`` keys (a missing key is
  a value of its own), up to N per task.
- **Broadcast**: one task per file (Replication, Removal); N must be 1.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ctaprod.core.errors import InvalidInput

__all__ = [
    "PLUGINS",
    "GroupFile",
    "Grouping",
    "GroupingPlugin",
    "PluginRegistry",
    "broadcast",
    "by_metadata",
    "by_size",
    "standard",
]

MAX_FILES_PER_GROUP = 10_000
MAX_BYTES_PER_GROUP = 2**50  # 1 PiB


@dataclass(frozen=True, slots=True)
class GroupFile:
    """One Unused file of a transformation, as the plugins see it."""

    file_id: int
    lfn: str
    size: int = 0
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Grouping:
    """The groups to make tasks of (each in file-ID order) and the files left waiting."""

    groups: list[tuple[GroupFile, ...]]
    leftovers: list[GroupFile]


def _ordered(files: Iterable[GroupFile]) -> list[GroupFile]:
    ordered = sorted(files, key=lambda f: f.file_id)
    for first, second in itertools.pairwise(ordered):
        if first.file_id == second.file_id:
            raise ValueError(f"file {first.file_id} given twice to a grouping plugin")
    return ordered


def _chunks(files: Sequence[GroupFile], size: int, flush: bool) -> Grouping:
    cut = len(files) if flush else len(files) - len(files) % size
    groups = [tuple(files[i : i + size]) for i in range(0, cut, size)]
    return Grouping(groups, list(files[cut:]))


def standard(
    files: Iterable[GroupFile], size: int, *, flush: bool = False, keys: Sequence[str] = ()
) -> Grouping:
    """Groups of ``size`` files; with ``flush`` the last group may be smaller."""
    return _chunks(_ordered(files), size, flush)


def by_size(
    files: Iterable[GroupFile], size: int, *, flush: bool = False, keys: Sequence[str] = ()
) -> Grouping:
    """Groups of at most ``size`` bytes, in order: a group closes when the next file would
    not fit in it; a file larger than ``size`` is a group alone. The open group at the end
    waits (a later file may still fit in it) unless ``flush``."""
    groups: list[tuple[GroupFile, ...]] = []
    current: list[GroupFile] = []
    total = 0
    for item in _ordered(files):
        if current and total + item.size > size:
            groups.append(tuple(current))
            current, total = [], 0
        current.append(item)
        total += item.size
        if total >= size:  # full (or a single oversized file): nothing more fits
            groups.append(tuple(current))
            current, total = [], 0
    if flush and current:
        groups.append(tuple(current))
        current = []
    return Grouping(groups, current)


def _hashable(value: Any) -> Hashable:
    if isinstance(value, list | tuple):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((str(k), _hashable(v)) for k, v in value.items()))
    return (type(value).__name__, value)  # 1 and 1.0 and "1" are different values


def by_metadata(
    files: Iterable[GroupFile], size: int, *, flush: bool = False, keys: Sequence[str] = ()
) -> Grouping:
    """Files sharing the values of ``keys``, ``size`` per group; a missing key is a value of
    its own (such files group together). Groups come in the order of their first file."""
    if not keys:
        raise ValueError("ByMetadata needs the metadata keys to group by")
    buckets: dict[Hashable, list[GroupFile]] = {}
    for item in _ordered(files):
        key = tuple(_hashable(item.metadata.get(k)) for k in keys)
        buckets.setdefault(key, []).append(item)
    groups: list[tuple[GroupFile, ...]] = []
    leftovers: list[GroupFile] = []
    for bucket in buckets.values():
        part = _chunks(bucket, size, flush)
        groups.extend(part.groups)
        leftovers.extend(part.leftovers)
    groups.sort(key=lambda g: g[0].file_id)
    leftovers.sort(key=lambda f: f.file_id)
    return Grouping(groups, leftovers)


def broadcast(
    files: Iterable[GroupFile], size: int = 1, *, flush: bool = False, keys: Sequence[str] = ()
) -> Grouping:
    """One group per file."""
    return Grouping([(item,) for item in _ordered(files)], [])


GroupFunction = Callable[..., Grouping]


@dataclass(frozen=True)
class GroupingPlugin:
    """A plugin and its group-size contract: ``unit`` is what the size counts (files or
    bytes), ``min_size``..``max_size`` its range, ``default_size`` when none is given
    (None: the size is required), and whether it needs ``group_by`` keys."""

    name: str
    group: GroupFunction
    unit: str = "files"
    min_size: int = 1
    max_size: int = MAX_FILES_PER_GROUP
    default_size: int | None = 1
    needs_keys: bool = False

    def check_size(self, size: int | None) -> int:
        """The group size to use, or ``InvalidInput`` naming ``group_size``."""
        if size is None:
            if self.default_size is None:
                raise InvalidInput(
                    f"group_size: the {self.name} plugin needs a group size ({self.unit})",
                    key="group_size",
                )
            return self.default_size
        if not self.min_size <= size <= self.max_size:
            limits = (
                f"exactly {self.min_size}"
                if self.min_size == self.max_size
                else f"from {self.min_size} to {self.max_size}"
            )
            raise InvalidInput(
                f"group_size {size} is out of range for the {self.name} plugin: "
                f"{limits} {self.unit}",
                key="group_size",
            )
        return size

    def __call__(
        self,
        files: Iterable[GroupFile],
        size: int,
        *,
        flush: bool = False,
        keys: Sequence[str] = (),
    ) -> Grouping:
        return self.group(files, self.check_size(size), flush=flush, keys=tuple(keys))


class PluginRegistry:
    """The grouping plugins by name (names compare without letter case)."""

    def __init__(self, plugins: Iterable[GroupingPlugin] = ()) -> None:
        self._plugins: dict[str, GroupingPlugin] = {}
        for plugin in plugins:
            self.register(plugin)

    def register(self, plugin: GroupingPlugin) -> None:
        """Add a plugin; a name in use is refused (a silent replacement would change the
        tasks of the transformations that use it)."""
        if plugin.name.lower() in self._plugins:
            raise ValueError(f"grouping plugin {plugin.name!r} is registered already")
        self._plugins[plugin.name.lower()] = plugin

    def get(self, name: str) -> GroupingPlugin:
        """The plugin called ``name``, or ``InvalidInput`` listing the known ones."""
        plugin = self._plugins.get(str(name).lower())
        if plugin is None:
            raise InvalidInput(
                f"plugin: unknown grouping plugin {name!r} (known: {', '.join(self.names())})",
                key="plugin",
            )
        return plugin

    def names(self) -> list[str]:
        return sorted(p.name for p in self._plugins.values())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._plugins


PLUGINS = PluginRegistry(
    [
        GroupingPlugin("Standard", standard),
        GroupingPlugin(
            "BySize", by_size, unit="bytes", max_size=MAX_BYTES_PER_GROUP, default_size=None
        ),
        GroupingPlugin("ByMetadata", by_metadata, needs_keys=True),
        GroupingPlugin("Broadcast", broadcast, max_size=1),
    ]
)
