"""Catalog events: what changed in the file catalog, as the outbox records it (ADR 0005).

Writers describe a change with a :class:`NewEvent` in the transaction that makes it; a
consumer reads :class:`Event` rows in ``seq`` order. The kinds are a closed set so that a
consumer can handle each one explicitly and a typo cannot create a kind nobody reads.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import NamedTuple


class EventKind(StrEnum):
    """What happened (stored as the value; at most 16 characters)."""

    FILE_REGISTERED = "file_registered"  # a new catalog entry (its first replica included)
    FILE_REMOVED = "file_removed"  # the entry is gone (replicas, metadata and ancestry too)
    FILE_META = "file_meta"  # values set or unset on one file
    DIR_META = "dir_meta"  # values set or unset on a directory: every file below may change
    REPLICA_ADDED = "replica_added"  # a replica of an existing file on ``se``
    REPLICA_REMOVED = "replica_removed"  # a replica entry removed from ``se``


# Metadata field names are identifiers (``core.metaquery.check_field_name``), so a comma
# cannot occur in one: the list is stored as one compact comma-separated string.
FIELD_SEPARATOR = ","


_REPLICA_KINDS = frozenset({EventKind.REPLICA_ADDED, EventKind.REPLICA_REMOVED})
_META_KINDS = frozenset({EventKind.FILE_META, EventKind.DIR_META})


class NewEvent(NamedTuple):
    """An event to write. ``fields``: the metadata fields changed (metadata events only).

    A named tuple, not a dataclass: registration builds one per new file in its hot path.
    :meth:`check` (run by the writer on every event) refuses an incomplete one."""

    kind: EventKind
    file_id: int | None = None
    dir_id: int | None = None
    se: str | None = None
    fields: tuple[str, ...] = ()

    def check(self) -> None:
        """Raise ValueError unless the event names what it is about."""
        if self.file_id is None and self.dir_id is None:
            raise ValueError(f"a {self.kind} event names a file or a directory")
        if self.kind is EventKind.DIR_META and self.dir_id is None:
            raise ValueError("a dir_meta event names its directory")
        if (self.se is not None or self.kind in _REPLICA_KINDS) and (
            self.kind not in _REPLICA_KINDS or not self.se
        ):
            raise ValueError(f"a {self.kind} event cannot have se={self.se!r}")
        if self.fields:
            if self.kind not in _META_KINDS:
                raise ValueError(f"a {self.kind} event does not carry changed fields")
            for name in self.fields:
                if not name or FIELD_SEPARATOR in name:
                    raise ValueError(f"invalid field name in an event: {name!r}")


@dataclass(frozen=True, slots=True)
class Event:
    """A sequenced event as a consumer sees it; ``seq`` increases strictly, with gaps."""

    seq: int
    kind: EventKind
    file_id: int | None
    dir_id: int | None
    se: str | None
    fields: tuple[str, ...]
    created: datetime

    def touches(self, names: Iterable[str]) -> bool:
        """Whether this event may change the value of one of ``names`` for some file.

        A metadata event changes only its listed fields; any other kind (a new or removed
        file, a replica) concerns every field, as does a metadata event without a list.
        """
        if self.kind not in (EventKind.FILE_META, EventKind.DIR_META) or not self.fields:
            return True
        return not set(self.fields).isdisjoint(names)


def pack_fields(names: Iterable[str]) -> str | None:
    """The stored form of a field list: sorted, without repeats; None when empty."""
    unique = sorted(set(names))
    return FIELD_SEPARATOR.join(unique) if unique else None


def unpack_fields(text: str | None) -> tuple[str, ...]:
    """The field names of a stored list (empty for None)."""
    return tuple(text.split(FIELD_SEPARATOR)) if text else ()
