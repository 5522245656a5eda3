"""Sandbox archives: deterministic tar.gz packing and defensive unpacking.

Packing normalises everything that is not content (member order, times, owners, gzip
header) so that the same files always give the same sha256, which lets the sandbox store
deduplicate uploads.  Unpacking never trusts the archive: every member is checked first
(no absolute names, no ``..``, only regular files and directories) and extraction goes
through tarfile's ``data`` filter where the interpreter has it.
"""

from __future__ import annotations

import gzip
import hashlib
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
# What a corrupt or truncated (gzipped) tar raises while being read.
_BROKEN = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile)


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
        raise NotFound(f"archive {archive} does not exist", path=str(archive)) from None
    except _BROKEN as exc:
        raise InvalidInput(
            f"{archive.name} is not a valid tar archive: {exc}", path=str(archive)
        ) from None


def check_members(
    archive: Path, max_members: int = 10000, *, max_total_size: int | None = None
) -> list[str]:
    """Validate every member of ``archive`` (tar, optionally gzipped); return their names.

    Raises :class:`InvalidInput` naming the first offending member (absolute name, ``..``
    component, link, device, fifo or other special entry), when there are more than
    ``max_members`` members, or when the file is not a tar archive; :class:`TooLarge` when
    the regular files add up to more than ``max_total_size`` bytes.
    """
    with _open(archive) as tar:
        try:
            return [m.name for m in _checked(tar, max_members, max_total_size)]
        except _BROKEN as exc:
            raise InvalidInput(
                f"{archive.name} is not a valid tar archive: {exc}", path=str(archive)
            ) from None


def safe_extract(
    archive: Path, dest: Path, *, max_members: int = 10000, max_total_size: int | None = None
) -> list[str]:
    """Check ``archive`` like :func:`check_members`, then extract it under ``dest``.

    Only regular files and directories are written, never outside ``dest``; returns the
    member names.
    """
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
            raise InvalidInput(
                f"refused to extract {archive.name}: {exc}", path=str(archive)
            ) from None
        except _BROKEN as exc:
            raise InvalidInput(
                f"{archive.name} is not a valid tar archive: {exc}", path=str(archive)
            ) from None
    return [m.name for m in members]
