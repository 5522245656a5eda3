"""A storage element on an XRootD server, through the PyPI ``xrootd`` client.

SE path ``/a/b`` is ``<base_path>/a/b`` on the server, whose URL is
``root://host:port//<base_path>/a/b``.  Uploads go to a temporary name in the target
directory, are checked against the server's ADLER32 and only then renamed, so a cut or
corrupted upload never shows at the target.  Downloads are checked against the server's
checksum too.

The XRootD library is imported when the first storage element is built (importing this
module does not need it).  Before that import the client is told not to retry a refused
connection (``XRD_CONNECTIONRETRY=1``) and to check timeouts every second, and each call
carries a timeout, so a server that is down gives :class:`Unavailable` in seconds.
Variables already set in the environment are left alone.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, NoReturn

from ctaprod.core.checksum import Adler32
from ctaprod.core.errors import InvalidInput, NotFound, Unavailable
from ctaprod.core.settings import StorageElementConfig
from ctaprod.resources.storage.base import (
    CHUNK_SIZE,
    StorageElement,
    local_source,
    normalise_path,
    normalise_prefix,
)

__all__ = ["XRootDStorageElement", "parse_checksum_answer"]

# Client settings, put in the environment before the library is first imported (values
# already in the environment win), and set again after the import in case the library was
# imported earlier by someone else.
CLIENT_ENV = {
    "XRD_CONNECTIONRETRY": "1",  # a refused connection is not retried for minutes
    "XRD_CONNECTIONWINDOW": "10",  # seconds to establish a connection
    "XRD_REQUESTTIMEOUT": "60",  # default for calls without their own timeout
    "XRD_STREAMERRORWINDOW": "0",  # a failed connection is not remembered as failed
    "XRD_TIMEOUTRESOLUTION": "1",  # check timeouts every second, not every 15 s
}
_ENV_NAMES = {
    "XRD_CONNECTIONRETRY": "ConnectionRetry",
    "XRD_CONNECTIONWINDOW": "ConnectionWindow",
    "XRD_REQUESTTIMEOUT": "RequestTimeout",
    "XRD_STREAMERRORWINDOW": "StreamErrorWindow",
    "XRD_TIMEOUTRESOLUTION": "TimeoutResolution",
}

# kXR error codes of the XRootD protocol (XProtocol.hh).
_FS_ERROR = 3005
_NOT_AUTHORIZED = 3010
_NOT_FOUND = 3011
_NOT_FILE = 3015
_IS_DIRECTORY = 3016
_ITEM_EXISTS = 3018


def _load_client() -> tuple[Any, Any]:
    """The ``XRootD.client`` module and its flags, configured for fast failures."""
    for key, value in CLIENT_ENV.items():
        os.environ.setdefault(key, value)
    try:
        from XRootD import client
        from XRootD.client import flags
    except ImportError as exc:
        raise Unavailable(
            "the XRootD storage plugin needs the XRootD Python client: "
            "pip install 'ctaprod[xrootd]'",
            plugin="xrootd",
        ) from exc
    for key, name in _ENV_NAMES.items():
        with contextlib.suppress(Exception):  # refused when the shell set it: fine
            client.EnvPutInt(name, int(os.environ[key]))
    return client, flags


def parse_checksum_answer(answer: bytes | str | None) -> str:
    """``b'adler32 1dcf4555\\x00'`` (a ``query checksum`` answer) -> ``'1dcf4555'``."""
    if isinstance(answer, bytes):
        answer = answer.decode("ascii", "replace")
    words = (answer or "").strip("\x00 \n").split()
    if len(words) != 2 or words[0].lower() != "adler32":
        raise ValueError(f"not an adler32 checksum: {answer!r}")
    return f"{int(words[1], 16) & 0xFFFFFFFF:08x}"


def _checksum_mismatch(se: str, path: str, where: str, expected: str, actual: str) -> Unavailable:
    return Unavailable(
        f"{se}: checksum mismatch for {path!r} after {where}: "
        f"expected adler32 {expected}, got {actual}; the bad copy was deleted",
        se=se,
        path=path,
        reason="checksum_mismatch",
        expected=expected,
        actual=actual,
    )


def _write_local(out: BinaryIO, chunk: bytes, dest: Path, *, sync: bool = False) -> None:
    """Write to the local download file; local disk errors become :class:`Unavailable`."""
    try:
        out.write(chunk)
        if sync:
            out.flush()
            os.fsync(out.fileno())
    except OSError as exc:
        raise Unavailable(f"cannot write {dest}: {exc.strerror or exc}", path=str(dest)) from exc


class _RemoteReader(io.RawIOBase):
    """Sequential reads of an open ``XRootD.client.File`` (wrapped in a BufferedReader)."""

    def __init__(self, handle: Any, se: XRootDStorageElement, path: str) -> None:
        self._handle = handle
        self._se = se
        self._path = path
        self._offset = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        status, data = self._handle.read(self._offset, len(view), timeout=self._se.timeout)
        if not status.ok:
            self._se._fail(status, "read", self._path)
        count = len(data)
        view[:count] = data
        self._offset += count
        return count

    def readall(self) -> bytes:
        """The rest of the file, in large reads (the default reads 8 KiB at a time)."""
        parts = []
        buffer = bytearray(self._se.chunk_size)
        while count := self.readinto(buffer):
            parts.append(bytes(buffer[:count]))
        return b"".join(parts)

    def close(self) -> None:
        if not self.closed:
            with contextlib.suppress(Exception):
                self._handle.close(timeout=self._se.timeout)
        super().close()


class XRootDStorageElement(StorageElement):
    """Files on an XRootD server under ``base_path`` (``root://host:port`` endpoint)."""

    def __init__(
        self,
        name: str,
        endpoint: str,
        base_path: str = "/",
        *,
        timeout: int = 30,
        chunk_size: int = 4 * CHUNK_SIZE,
    ) -> None:
        super().__init__(name)
        endpoint = endpoint.strip().rstrip("/")
        scheme, _, host = endpoint.partition("://")
        if scheme not in ("root", "xroot", "roots", "xroots") or not host or "/" in host:
            raise InvalidInput(
                f"storage element {name}: XRootD endpoint must look like "
                f"root://host[:port], not {endpoint!r}",
                se=name,
                endpoint=endpoint,
            )
        base = PurePosixPath("/" + (base_path or "").strip().strip("/"))
        if ".." in base.parts or any(ord(c) < 32 for c in str(base)):
            raise InvalidInput(f"storage element {name}: bad base path {base_path!r}", se=name)
        if timeout < 1 or chunk_size < 1:
            raise InvalidInput(f"storage element {name}: timeout and chunk size must be > 0")
        self.endpoint = endpoint
        self.base_path = str(base)
        self.timeout = int(timeout)
        self.chunk_size = int(chunk_size)
        self._client, self._flags = _load_client()
        self._fs = self._client.FileSystem(endpoint)

    @classmethod
    def from_config(cls, name: str, config: StorageElementConfig) -> XRootDStorageElement:
        """Build from configuration: ``endpoint``, ``base_path`` and options ``timeout``
        (seconds per call) and ``chunk_size`` (bytes per read or write)."""
        if not config.endpoint:
            raise InvalidInput(
                f"storage element {name}: the xrootd plugin needs an endpoint (root://host:port)",
                se=name,
            )
        unknown = sorted(set(config.options) - {"timeout", "chunk_size"})
        if unknown:
            raise InvalidInput(
                f"storage element {name}: unknown xrootd options {unknown}",
                se=name,
                options=unknown,
            )
        kwargs = {key: int(value) for key, value in config.options.items()}
        return cls(name, config.endpoint, config.base_path or "/", **kwargs)

    # -- paths and errors ------------------------------------------------------------------

    def _remote(self, path: str) -> str:
        """Server path of SE ``path`` (refuses paths leaving the base)."""
        relative = normalise_path(path)
        return f"{self.base_path.rstrip('/')}/{relative}"

    def _url_of(self, remote: str) -> str:
        return f"{self.endpoint}/{remote}"

    @staticmethod
    def _missing(status: Any) -> bool:
        """Whether a failed call says the path does not exist (or a parent is a file)."""
        errno = int(getattr(status, "errno", 0) or 0)
        text = str(status.message).lower()
        return errno == _NOT_FOUND or (errno == _FS_ERROR and "not a directory" in text)

    def _fail(self, status: Any, action: str, path: str) -> NoReturn:
        """Raise the domain error for a failed XRootD call."""
        message = str(status.message).strip()
        errno = int(getattr(status, "errno", 0) or 0)
        if self._missing(status) or errno in (_IS_DIRECTORY, _NOT_FILE):
            raise NotFound(f"{self.name}: no file {path!r}", se=self.name, path=path)
        if errno == _NOT_AUTHORIZED:
            raise Unavailable(
                f"{self.name}: {self.endpoint} refused to {action} {path!r}: {message}",
                se=self.name,
                path=path,
                reason="not_authorized",
            )
        raise Unavailable(
            f"{self.name}: cannot {action} {path!r} on {self.endpoint}: {message}",
            se=self.name,
            path=path,
            errno=errno,
        )

    def _stat(self, path: str) -> Any | None:
        """Stat info of SE ``path`` or None when it does not exist."""
        status, info = self._fs.stat(self._remote(path), timeout=self.timeout)
        if status.ok:
            return info
        if self._missing(status):
            return None
        self._fail(status, "stat", path)

    def _is_dir(self, info: Any) -> bool:
        return bool(info.flags & self._flags.StatInfoFlags.IS_DIR)

    def _stored_checksum(self, remote: str, path: str) -> str:
        """ADLER32 the server computes (or has cached) for the server path ``remote``."""
        status, answer = self._fs.query(
            self._flags.QueryCode.CHECKSUM, remote, timeout=self.timeout
        )
        if not status.ok:
            self._fail(status, "checksum", path)
        try:
            return parse_checksum_answer(answer)
        except ValueError as exc:
            raise Unavailable(
                f"{self.name}: unexpected checksum answer for {path!r}: {exc} "
                "(is 'xrootd.chksum adler32' configured on the server?)",
                se=self.name,
                path=path,
            ) from None

    # -- the StorageElement interface ------------------------------------------------------

    def put(self, path: str, source: BinaryIO | Path) -> int:
        """Upload to a temporary name, verify the server's ADLER32, rename to ``path``."""
        remote = self._remote(path)
        with local_source(source) as stream:
            return self._upload(path, remote, stream)

    def _upload(self, path: str, remote: str, source: BinaryIO) -> int:
        parent, _, leaf = remote.rpartition("/")
        temporary = f"{parent}/.{leaf}.{uuid.uuid4().hex[:12]}.part"
        flags = self._flags
        handle = self._client.File()
        mode = flags.AccessMode.UR | flags.AccessMode.UW | flags.AccessMode.GR | flags.AccessMode.OR
        status, _ = handle.open(
            self._url_of(temporary),
            flags.OpenFlags.NEW | flags.OpenFlags.MAKEPATH,
            mode,
            timeout=self.timeout,
        )
        if not status.ok:
            errno = int(getattr(status, "errno", 0) or 0)
            if self._missing(status) or errno in (_NOT_FILE, _IS_DIRECTORY, _ITEM_EXISTS):
                raise InvalidInput(
                    f"{self.name}: cannot create {path!r} (is a parent a file?): "
                    f"{status.message.strip()}",
                    se=self.name,
                    path=path,
                )
            self._fail(status, "write", path)
        digest = Adler32()
        try:
            while chunk := source.read(self.chunk_size):
                status, _ = handle.write(chunk, digest.size, timeout=self.timeout)
                if not status.ok:
                    self._fail(status, "write", path)
                digest.update(chunk)
            status, _ = handle.close(timeout=self.timeout)
            if not status.ok:
                self._fail(status, "write", path)
            local = digest.hexdigest()
            stored = self._stored_checksum(temporary, path)
            if stored != local:
                raise _checksum_mismatch(self.name, path, "upload", local, stored)
            status, _ = self._fs.mv(temporary, remote, timeout=self.timeout)
            if not status.ok:
                if int(getattr(status, "errno", 0) or 0) in (_IS_DIRECTORY, _ITEM_EXISTS):
                    raise InvalidInput(
                        f"{self.name}: {path!r} is a directory", se=self.name, path=path
                    )
                self._fail(status, "rename into place", path)
        except BaseException:
            with contextlib.suppress(Exception):
                if handle.is_open():
                    handle.close(timeout=self.timeout)
            with contextlib.suppress(Exception):
                self._fs.rm(temporary, timeout=self.timeout)
            raise
        return digest.size

    def get(self, path: str, dest: Path) -> None:
        """Download to a temporary file next to ``dest``, verify ADLER32, rename."""
        dest = Path(dest)
        with self.open(path) as stream:
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(
                dir=dest.parent, prefix=f".{dest.name}.", suffix=".part"
            )
            try:
                digest = Adler32()
                with os.fdopen(fd, "wb") as out:
                    while chunk := stream.read(self.chunk_size):
                        _write_local(out, chunk, dest)
                        digest.update(chunk)
                    _write_local(out, b"", dest, sync=True)
                local = digest.hexdigest()
                stored = self._stored_checksum(self._remote(path), path)
                if stored != local:
                    raise _checksum_mismatch(self.name, path, "download", stored, local)
                os.replace(temporary, dest)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise

    def open(self, path: str) -> BinaryIO:
        """A buffered binary read stream on ``path`` (the caller closes it)."""
        remote = self._remote(path)
        handle = self._client.File()
        status, _ = handle.open(
            self._url_of(remote), self._flags.OpenFlags.READ, timeout=self.timeout
        )
        if not status.ok:
            self._fail(status, "open", path)
        return io.BufferedReader(_RemoteReader(handle, self, path), buffer_size=self.chunk_size)

    def remove(self, path: str) -> bool:
        """Delete ``path``; False if there was no such file."""
        remote = self._remote(path)
        status, _ = self._fs.rm(remote, timeout=self.timeout)
        if status.ok:
            return True
        errno = int(getattr(status, "errno", 0) or 0)
        if self._missing(status):
            return False
        info = self._stat(path) if errno != 0 else None
        if info is not None and self._is_dir(info):
            raise InvalidInput(f"{self.name}: {path!r} is a directory", se=self.name, path=path)
        self._fail(status, "remove", path)

    def rename(self, src_path: str, dst_path: str) -> None:
        """Move ``src_path`` to ``dst_path`` with the server's ``mv`` (one atomic rename on
        the server's file system, which creates the missing directories and replaces a file
        already at ``dst_path``)."""
        source, target = self._remote(src_path), self._remote(dst_path)
        info = self._stat(src_path)
        if info is None or self._is_dir(info):
            raise NotFound(f"{self.name}: no file {src_path!r}", se=self.name, path=src_path)
        status, _ = self._fs.mv(source, target, timeout=self.timeout)
        if status.ok:
            return
        if int(getattr(status, "errno", 0) or 0) in (_IS_DIRECTORY, _ITEM_EXISTS):
            raise InvalidInput(
                f"{self.name}: {dst_path!r} is a directory", se=self.name, path=dst_path
            )
        self._fail(status, f"rename to {dst_path!r}", src_path)

    def exists(self, path: str) -> bool:
        """Whether a file (not a directory) exists at ``path``."""
        info = self._stat(path)
        return info is not None and not self._is_dir(info)

    def size(self, path: str) -> int:
        """Size in bytes of ``path``."""
        info = self._stat(path)
        if info is None or self._is_dir(info):
            raise NotFound(f"{self.name}: no file {path!r}", se=self.name, path=path)
        return int(info.size)

    def checksum(self, path: str) -> str:
        """ADLER32 of ``path`` as computed by the server (8 lowercase hex digits)."""
        self.size(path)  # NotFound for a directory: the server would not answer for one
        return self._stored_checksum(self._remote(path), path)

    def list(self, prefix: str) -> Iterator[tuple[str, int]]:
        """Files under ``prefix``: ``dirlist`` with stat information, one directory at a
        time (the server sends a directory's entries in one answer)."""
        relative = normalise_prefix(prefix)
        return self._walk(relative)

    def _walk(self, relative: str) -> Iterator[tuple[str, int]]:
        base = self.base_path.rstrip("/")
        pending = [relative]
        while pending:
            rel = pending.pop()
            shown = "/" + rel
            status, listing = self._fs.dirlist(
                f"{base}/{rel}" if rel else base or "/",
                self._flags.DirListFlags.STAT,
                timeout=self.timeout,
            )
            if not status.ok:
                errno = int(getattr(status, "errno", 0) or 0)
                if self._missing(status) or errno in (_NOT_FILE, _IS_DIRECTORY):
                    continue  # no such directory (or a file): nothing under it
                self._fail(status, "list", shown)
            for entry in listing or ():
                info = entry.statinfo
                path = f"{rel}/{entry.name}" if rel else entry.name
                if info is None:  # removed between the listing and its stat
                    continue
                if self._is_dir(info):
                    pending.append(path)
                elif not info.flags & self._flags.StatInfoFlags.OTHER:
                    yield "/" + path, int(info.size)

    def modified(self, path: str) -> datetime | None:
        """Modification time of ``path`` as the server reports it (UTC)."""
        info = self._stat(path)
        if info is None or self._is_dir(info):
            raise NotFound(f"{self.name}: no file {path!r}", se=self.name, path=path)
        return datetime.fromtimestamp(int(info.modtime), UTC)

    def url(self, path: str) -> str:
        """``root://host:port//base/path``."""
        return self._url_of(self._remote(path))
