"""A storage element on a local (or mounted) POSIX file system.

Files and directories get the modes the process umask allows (``ctaprod up`` sets 077:
owner-only; a site whose SE is served by another daemon keeps its umask 022).
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from ctaprod.core.errors import InvalidInput, NotFound, Unavailable
from ctaprod.resources.storage.base import (
    CHUNK_SIZE,
    StorageElement,
    adler32_of,
    local_source,
    normalise_path,
    normalise_prefix,
)

__all__ = ["PosixStorageElement"]


@contextlib.contextmanager
def _backend(se: str, action: str, path: str) -> Iterator[None]:
    """Turn unexpected OS errors of the file system into :class:`Unavailable`."""
    try:
        yield
    except (FileNotFoundError, NotADirectoryError):
        raise NotFound(f"{se}: no file {path!r}", se=se, path=path) from None
    except OSError as exc:
        raise Unavailable(
            f"{se}: cannot {action} {path!r}: {exc.strerror or exc}", se=se, path=path
        ) from exc


def _umask() -> int:
    """The process umask, read without changing it (other threads may create files)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022  # not Linux: the usual default


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on directories: the rename stands
        pass
    finally:
        os.close(fd)


def _write_atomically(source: BinaryIO, target: Path, se_name: str) -> int:
    """Copy ``source`` to a temporary file next to ``target``, fsync, rename; bytes copied.

    Whatever interrupts the copy (including an exception raised by ``source``), the
    temporary file is removed and ``target`` is left untouched.
    """
    with _backend(se_name, "write", str(target)):
        fd, tmp_name = tempfile.mkstemp(
            dir=target.parent, prefix=f".{target.name}.", suffix=".part"
        )
    written = 0
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := source.read(CHUNK_SIZE):
                with _backend(se_name, "write", str(target)):
                    out.write(chunk)
                written += len(chunk)
            with _backend(se_name, "write", str(target)):
                out.flush()
                os.fsync(out.fileno())
                os.fchmod(out.fileno(), 0o666 & ~_umask())
        with _backend(se_name, "write", str(target)):
            os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)
    return written


class PosixStorageElement(StorageElement):
    """Files under ``base_path``; SE path ``/a/b`` is the file ``<base_path>/a/b``."""

    def __init__(self, name: str, base_path: Path | str) -> None:
        super().__init__(name)
        if not str(base_path):
            raise InvalidInput(f"storage element {name}: base path is empty", se=name)
        self.base_path = Path(base_path).expanduser().absolute()

    def _local(self, path: str) -> Path:
        """The local path for SE ``path``; refuses paths leaving the base (also by symlink)."""
        target = self.base_path / normalise_path(path)
        real_base = os.path.realpath(self.base_path)
        real_target = os.path.realpath(target)
        if os.path.commonpath([real_base, real_target]) != real_base:
            raise InvalidInput(
                f"{self.name}: path {path!r} leads outside the storage element",
                se=self.name,
                path=path,
            )
        return target

    def _file(self, path: str) -> Path:
        """The local path of an existing regular file, else :class:`NotFound`."""
        target = self._local(path)
        with _backend(self.name, "access", path):
            mode = target.stat().st_mode
        if not stat.S_ISREG(mode):
            raise NotFound(f"{self.name}: {path!r} is not a file", se=self.name, path=path)
        return target

    def _make_parent(self, target: Path, path: str) -> None:
        """Create the directories above ``target`` (the local file of SE ``path``)."""
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise InvalidInput(
                f"{self.name}: a parent of {path!r} is a file", se=self.name, path=path
            ) from None
        except OSError as exc:
            raise Unavailable(
                f"{self.name}: cannot create the directory of {path!r}: {exc}",
                se=self.name,
                path=path,
            ) from exc

    def put(self, path: str, source: BinaryIO | Path) -> int:
        """Store ``source`` at ``path`` atomically (temporary name, fsync, rename)."""
        target = self._local(path)
        if target.is_dir():
            raise InvalidInput(f"{self.name}: {path!r} is a directory", se=self.name, path=path)
        if self.base_path.exists() and not self.base_path.is_dir():
            raise Unavailable(
                f"{self.name}: base path {self.base_path} is not a directory", se=self.name
            )
        self._make_parent(target, path)
        with local_source(source) as stream:
            return _write_atomically(stream, target, self.name)

    def get(self, path: str, dest: Path) -> None:
        """Copy ``path`` to the local file ``dest`` (written atomically too)."""
        with self.open(path) as stream:
            dest.parent.mkdir(parents=True, exist_ok=True)
            _write_atomically(stream, dest, self.name)

    def open(self, path: str) -> BinaryIO:
        """A binary read stream on ``path``."""
        target = self._file(path)
        with _backend(self.name, "open", path):
            return open(target, "rb")

    def remove(self, path: str) -> bool:
        """Delete ``path``; False if there was no such file."""
        target = self._local(path)
        if target.is_dir():
            raise InvalidInput(f"{self.name}: {path!r} is a directory", se=self.name, path=path)
        try:
            target.unlink()
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError as exc:
            raise Unavailable(
                f"{self.name}: cannot remove {path!r}: {exc.strerror or exc}",
                se=self.name,
                path=path,
            ) from exc
        return True

    def rename(self, src_path: str, dst_path: str) -> None:
        """Move ``src_path`` to ``dst_path`` atomically (``os.replace``), then fsync the
        directories so that the move survives a crash."""
        source = self._file(src_path)
        target = self._local(dst_path)
        if target.is_dir():
            raise InvalidInput(
                f"{self.name}: {dst_path!r} is a directory", se=self.name, path=dst_path
            )
        self._make_parent(target, dst_path)
        with _backend(self.name, f"rename to {dst_path!r}", src_path):
            os.replace(source, target)
        _fsync_dir(target.parent)
        if source.parent != target.parent:
            _fsync_dir(source.parent)

    def exists(self, path: str) -> bool:
        """Whether a regular file exists at ``path``."""
        return self._local(path).is_file()

    def size(self, path: str) -> int:
        """Size in bytes of ``path``."""
        target = self._file(path)
        with _backend(self.name, "access", path):
            return target.stat().st_size

    def checksum(self, path: str) -> str:
        """ADLER32 of ``path`` (8 lowercase hex digits)."""
        with self.open(path) as stream, _backend(self.name, "read", path):
            return adler32_of(stream)

    def list(self, prefix: str) -> Iterator[tuple[str, int]]:
        """Regular files under ``prefix`` (an ``os.scandir`` walk, one directory's entries
        at a time; symbolic links are not followed)."""
        relative = normalise_prefix(prefix)
        top = self._local(relative) if relative else self.base_path
        if self.base_path.exists() and not self.base_path.is_dir():
            raise Unavailable(
                f"{self.name}: base path {self.base_path} is not a directory", se=self.name
            )
        return self._walk(top, relative)

    def _walk(self, top: Path, relative: str) -> Iterator[tuple[str, int]]:
        pending = [(str(top), relative)]
        while pending:
            directory, rel = pending.pop()
            try:
                with os.scandir(directory) as entries:
                    found = [(e.name, e.path, self._kind(e)) for e in entries]
            except (FileNotFoundError, NotADirectoryError):
                continue  # no such directory (or removed meanwhile): nothing under it
            except OSError as exc:
                raise Unavailable(
                    f"{self.name}: cannot list {'/' + rel!r}: {exc.strerror or exc}",
                    se=self.name,
                    path="/" + rel,
                ) from exc
            for name, local, size in found:
                path = f"{rel}/{name}" if rel else name
                if size is None:
                    pending.append((local, path))
                elif size >= 0:
                    yield "/" + path, size

    @staticmethod
    def _kind(entry: os.DirEntry[str]) -> int | None:
        """None for a directory, the size of a regular file, -1 for anything else (links,
        devices, files removed meanwhile)."""
        try:
            if entry.is_dir(follow_symlinks=False):
                return None
            if entry.is_file(follow_symlinks=False):
                return entry.stat(follow_symlinks=False).st_size
        except FileNotFoundError:
            pass
        return -1

    def modified(self, path: str) -> datetime | None:
        """Modification time of ``path`` (UTC)."""
        target = self._file(path)
        with _backend(self.name, "access", path):
            return datetime.fromtimestamp(target.stat().st_mtime, UTC)

    def url(self, path: str) -> str:
        """``file://`` URL of ``path``."""
        return self._local(path).as_uri()
