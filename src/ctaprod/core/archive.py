"""Sandbox archives: deterministic tar.gz packing and defensive unpacking.

Packing normalises everything that is not content (member order, times, owners, gzip
header) so that the same files always give the same sha256, which lets the sandbox store
deduplicate uploads.  Unpacking never trusts the archive: every member is checked first
(no absolute names, no ``..``, only regular files and directories) and extraction goes
through tarfile's ``data`` filter where the interpreter has it.

Bombs: the member count and the total size of the files are capped, and the decompressed
stream is counted as it is read (gzip, bzip2 or xz), so that neither a small archive that
unpacks to gigabytes nor a lying header (a huge extended header, a size field that does not
match the data) costs more than the cap in time, memory or disk.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import os
import stat
import tarfile
import tempfile
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath

from ctaprod.core.errors import InvalidInput, NotFound, TooLarge

__all__ = ["check_members", "make_archive", "safe_extract", "sha256_file"]

_CHUNK = 1024 * 1024
# Defaults where no setting is passed (the worker node): 10x the default upload limit.
MAX_MEMBERS = 10_000
MAX_UNPACKED_BYTES = 100 * 1024 * 1024
# What a corrupt or truncated (gzipped) tar raises while being read.
_BROKEN = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError, OSError)


def sha256_file(path: Path) -> str:
    """Hex sha256 of the content of ``path``, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _arcname(path: Path, base: Path | None) -> PurePosixPath:
    if base is not None:
        try:
            relative = path.absolute().relative_to(base.absolute())
        except ValueError:
            pass
        else:
            return PurePosixPath(relative.as_posix())
    return PurePosixPath(path.name)


def _collect(path: Path, arcname: PurePosixPath, into: dict[str, Path]) -> None:
    """Add ``path`` (recursively for directories) to ``into`` as member name -> file."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        raise NotFound(f"cannot archive {path}: no such file", path=str(path)) from None
    if stat.S_ISLNK(info.st_mode):
        raise InvalidInput(f"cannot archive {path}: symbolic links are refused", path=str(path))
    if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
        raise InvalidInput(
            f"cannot archive {path}: not a regular file or directory", path=str(path)
        )
    name = arcname.as_posix()
    if name not in (".", ""):
        if name in into and into[name] != path:
            raise InvalidInput(
                f"two inputs give the same archive member {name!r}", member=name, path=str(path)
            )
        into[name] = path
    if stat.S_ISDIR(info.st_mode):
        for child in path.iterdir():
            _collect(child, arcname / child.name, into)


def _tarinfo(name: str, path: Path) -> tarfile.TarInfo:
    info = path.lstat()
    member = tarfile.TarInfo(name)
    member.mtime = 0
    member.uid = member.gid = 0
    member.uname = member.gname = ""
    executable = bool(info.st_mode & stat.S_IXUSR)
    if stat.S_ISDIR(info.st_mode):
        member.type = tarfile.DIRTYPE
        member.mode = 0o755
    else:
        member.type = tarfile.REGTYPE
        member.mode = 0o755 if executable else 0o644
        member.size = info.st_size
    return member


def make_archive(files: Sequence[Path], dest: Path, *, base: Path | None = None) -> str:
    """Pack ``files`` (directories recursively) into a deterministic tar.gz at ``dest``.

    A file ``p`` becomes member ``p.name``, or its path relative to ``base`` when it lies
    under ``base``; a directory keeps its structure under its own name.  Symbolic links and
    special files are refused with :class:`InvalidInput`.  Returns the sha256 of ``dest``.
    """
    members: dict[str, Path] = {}
    for path in files:
        _collect(Path(path), _arcname(Path(path), base), members)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as raw:
            with (
                gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz,
                tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
            ):
                for name in sorted(members):
                    member = _tarinfo(name, members[name])
                    if member.isdir():
                        tar.addfile(member)
                        continue
                    with open(members[name], "rb") as content:
                        tar.addfile(member, content)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp_name, dest)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return sha256_file(dest)


def _check_member(member: tarfile.TarInfo) -> None:
    name = member.name
    if not name or "\x00" in name:
        raise InvalidInput(f"archive member {name!r} has an invalid name", member=name)
    if name.startswith(("/", "\\")) or PurePosixPath(name).is_absolute():
        raise InvalidInput(f"archive member {name!r} has an absolute name", member=name)
    if ".." in PurePosixPath(name.replace("\\", "/")).parts:
        raise InvalidInput(f"archive member {name!r} contains a '..' component", member=name)
    kind = None
    if member.issym():
        kind = "a symbolic link"
    elif member.islnk():
        kind = "a hard link"
    elif member.ischr() or member.isblk():
        kind = "a device file"
    elif member.isfifo():
        kind = "a fifo"
    elif not (member.isreg() or member.isdir()):
        kind = "not a regular file or directory"
    if kind is not None:
        raise InvalidInput(f"archive member {name!r} is {kind}", member=name)


def _checked(
    members: Iterable[tarfile.TarInfo], max_members: int, max_total_size: int | None
) -> list[tarfile.TarInfo]:
    result: list[tarfile.TarInfo] = []
    total = 0
    for member in members:
        if len(result) >= max_members:
            raise InvalidInput(
                f"archive has more than {max_members} members", max_members=max_members
            )
        _check_member(member)
        total += member.size if member.isreg() else 0
        if max_total_size is not None and total > max_total_size:
            raise TooLarge(
                f"archive content exceeds {max_total_size} bytes", max_bytes=max_total_size
            )
        result.append(member)
    return result


def _open(archive: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(archive, mode="r:*")
    except FileNotFoundError:
        raise NotFound(f"archive {archive.name} does not exist") from None
    except _BROKEN as exc:
        raise InvalidInput(f"{archive.name} is not a valid tar archive: {exc}") from None


class _Counted(io.RawIOBase):
    """The decompressed content of an archive, refused once more than ``limit`` bytes came
    out of it: what the tar headers claim is not trusted."""

    def __init__(self, stream: io.BufferedIOBase, limit: int) -> None:
        self._stream = stream
        self._limit = limit
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self._stream.read(len(buffer))
        self.count += len(data)
        if self.count > self._limit:
            raise TooLarge(
                f"archive unpacks to more than {self._limit} bytes", max_bytes=self._limit
            )
        buffer[: len(data)] = data
        return len(data)


def _decompressed(raw: io.BufferedReader) -> io.BufferedIOBase:
    magic = raw.peek(6)[:6]
    if magic.startswith(b"\x1f\x8b"):
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if magic.startswith(b"BZh"):
        return bz2.BZ2File(raw, mode="rb")
    if magic.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMAFile(raw, mode="rb")
    return raw


def check_members(
    archive: Path,
    max_members: int = MAX_MEMBERS,
    *,
    max_total_size: int | None = MAX_UNPACKED_BYTES,
) -> list[str]:
    """Validate every member of ``archive`` (tar, optionally gzip, bzip2 or xz); return their
    names, reading the archive once as a stream.

    Raises :class:`InvalidInput` naming the first offending member (absolute name, ``..``
    component, link, device, fifo or other special entry), when there are more than
    ``max_members`` members, or when the file is not a tar archive; :class:`TooLarge` when
    the regular files add up to more than ``max_total_size`` bytes, or when the decompressed
    stream (headers included) grows past that much plus the room of ``max_members`` headers.
    """
    limit = (max_total_size or 2**62) + 3 * 512 * (max_members + 2) + 10240
    try:
        with open(archive, "rb") as raw, _decompressed(raw) as plain:
            counted = _Counted(plain, limit)
            with tarfile.open(fileobj=io.BufferedReader(counted, _CHUNK), mode="r|") as tar:
                return [m.name for m in _checked(tar, max_members, max_total_size)]
    except FileNotFoundError:
        raise NotFound(f"archive {archive.name} does not exist") from None
    except _BROKEN as exc:
        raise InvalidInput(f"{archive.name} is not a valid tar archive: {exc}") from None


def safe_extract(
    archive: Path,
    dest: Path,
    *,
    max_members: int = MAX_MEMBERS,
    max_total_size: int | None = MAX_UNPACKED_BYTES,
) -> list[str]:
    """Check ``archive`` like :func:`check_members` (nothing is written if it fails), then
    extract it under ``dest``.

    Only regular files and directories are written, never outside ``dest``; returns the
    member names.
    """
    check_members(archive, max_members, max_total_size=max_total_size)
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    with _open(archive) as tar:
        try:
            members = _checked(tar, max_members, max_total_size)
            for member in members:
                target = (root / member.name).resolve()
                if target != root and not target.is_relative_to(root):
                    raise InvalidInput(
                        f"archive member {member.name!r} would be written outside {dest}",
                        member=member.name,
                    )
            if hasattr(tarfile, "data_filter"):
                tar.extractall(root, members=members, filter="data")
            else:  # pragma: no cover - interpreters without extraction filters
                tar.extractall(root, members=members)
        except tarfile.FilterError as exc:
            raise InvalidInput(f"refused to extract {archive.name}: {exc}") from None
        except _BROKEN as exc:
            raise InvalidInput(f"{archive.name} is not a valid tar archive: {exc}") from None
    return [m.name for m in members]
