"""The storage element plugin interface.

A storage element (SE) stores files under logical POSIX paths.  Plugins map a path under
their own base (a directory, an XRootD or S3 prefix...) and must refuse paths that would
escape it; :func:`normalise_path` does that check for them.  Errors are domain errors:
a missing file is :class:`~ctaprod.core.errors.NotFound`, an unreachable backend
:class:`~ctaprod.core.errors.Unavailable`, a bad path
:class:`~ctaprod.core.errors.InvalidInput`.
"""

from __future__ import annotations

import abc
import contextlib
import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from ctaprod.core.checksum import CHUNK_SIZE, adler32_of
from ctaprod.core.errors import InvalidInput, NotFound

__all__ = [
    "CHUNK_SIZE",
    "StorageElement",
    "adler32_of",
    "local_source",
    "normalise_path",
    "normalise_prefix",
]


@contextlib.contextmanager
def local_source(source: BinaryIO | Path | str) -> Iterator[BinaryIO]:
    """``put``'s source as a stream: a local file opened (NotFound if missing), or as given."""
    if not isinstance(source, (str, os.PathLike)):
        yield source
        return
    try:
        stream = open(source, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        raise NotFound(f"local file {source} does not exist", path=str(source)) from None
    with stream:
        yield stream


def normalise_path(path: str) -> str:
    """Validate an SE path and return it relative to the SE base (no leading ``/``).

    Raises :class:`InvalidInput` for empty paths, NUL or control characters and ``..``
    components, i.e. anything that could point outside the storage element.
    """
    if not isinstance(path, str) or not path:
        raise InvalidInput("storage path must be a non-empty string", path=repr(path))
    if any(ord(char) < 32 or ord(char) == 127 for char in path):
        raise InvalidInput(f"storage path {path!r} contains control characters", path=path)
    parts = PurePosixPath(path).parts
    if ".." in parts:
        raise InvalidInput(f"storage path {path!r} must not contain '..'", path=path)
    relative = [part for part in parts if part.strip("/") and part != "."]
    if not relative:
        raise InvalidInput(f"storage path {path!r} does not name a file", path=path)
    return "/".join(relative)


def normalise_prefix(prefix: str) -> str:
    """Validate the directory ``prefix`` of a listing: ``""`` for the whole SE (``/``),
    else the path relative to the SE base as :func:`normalise_path` gives it (same
    refusals: empty string, control characters, ``..``)."""
    if isinstance(prefix, str) and prefix and not prefix.strip("/."):
        if any(ord(char) < 32 or ord(char) == 127 for char in prefix) or ".." in prefix:
            return normalise_path(prefix)  # raises with the usual message
        return ""
    return normalise_path(prefix)


def join_listed(relative: str) -> str:
    """The SE path (leading ``/``) of a file listed at ``relative`` under the SE base."""
    return "/" + relative.strip("/")


class StorageElement(abc.ABC):
    """A place where files are stored; one instance per configured storage element."""

    name: str

    def __init__(self, name: str) -> None:
        self.name = name

    @abc.abstractmethod
    def put(self, path: str, source: BinaryIO | Path) -> int:
        """Store ``source`` (a binary stream read to its end, or a local file) at ``path``.

        The write is atomic: readers see the old file (or none) until the whole content is
        written.  Returns the number of bytes written.
        """

    @abc.abstractmethod
    def get(self, path: str, dest: Path) -> None:
        """Copy the file at ``path`` to the local file ``dest``."""

    @abc.abstractmethod
    def open(self, path: str) -> BinaryIO:
        """Open the file at ``path`` for reading; the caller closes the stream."""

    @abc.abstractmethod
    def remove(self, path: str) -> bool:
        """Delete the file at ``path``; False when it did not exist."""

    @abc.abstractmethod
    def rename(self, src_path: str, dst_path: str) -> None:
        """Move the file at ``src_path`` to ``dst_path`` (creating its parent directories),
        replacing a file already there.

        Atomic where the backend allows it (a POSIX ``rename``, an XRootD ``mv``): readers
        see the old file at ``dst_path`` (or none) until the new one is there.  Where it
        cannot be (S3: server-side copy, then delete), a failure leaves the file at
        ``src_path``.  :class:`~ctaprod.core.errors.NotFound` when ``src_path`` is not a
        file.
        """

    @abc.abstractmethod
    def exists(self, path: str) -> bool:
        """Whether a file exists at ``path``."""

    @abc.abstractmethod
    def size(self, path: str) -> int:
        """Size in bytes of the file at ``path``."""

    @abc.abstractmethod
    def checksum(self, path: str) -> str:
        """ADLER32 of the file at ``path`` as 8 lowercase hex digits."""

    @abc.abstractmethod
    def list(self, prefix: str) -> Iterator[tuple[str, int]]:
        """The files under the directory ``prefix`` (recursively; ``/`` for the whole SE),
        as ``(path, size)`` with ``path`` relative to the SE base with a leading ``/``
        (LFN-like), streamed in no particular order.

        A prefix that does not exist (or names a file) gives nothing; a bad prefix is
        :class:`~ctaprod.core.errors.InvalidInput` when the iterator is created.
        """

    def modified(self, path: str) -> datetime | None:
        """Last modification time (aware, UTC) of the file at ``path``; None when the plugin
        cannot tell.  :class:`~ctaprod.core.errors.NotFound` for a missing file."""
        del path
        return None

    @abc.abstractmethod
    def url(self, path: str) -> str:
        """A URL for the file at ``path`` (``file://``, ``root://``, ``s3://``...)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"
