"""A storage element in an S3 bucket, through boto3 (path-style addressing).

SE path ``/a/b`` is the key ``<base_path>/a/b`` of the bucket; its URL is
``s3://<bucket>/<key>``.  An S3 PUT (single or multipart) is atomic: readers see the old
object or none until the upload completes, and a failed multipart upload is aborted.

The ADLER32 of the content is computed before the object is sent and stored with it as the
user metadata ``x-amz-meta-adler32``; :meth:`S3StorageElement.checksum` reads it back and
computes it from the data only for objects written by other tools.  Every upload is
verified (size, ETag = MD5 of the content or of its parts, stored ADLER32) and every download
is checked against the stored ADLER32; on a mismatch the bad copy is deleted and
:class:`~ctaprod.core.errors.Unavailable` (``detail["reason"] == "checksum_mismatch"``) is
raised.

boto3 is imported when the first storage element is built (importing this module does not
need it).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import os
import re
import tempfile
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any, BinaryIO, NoReturn

from ctaprod.core.checksum import Adler32, adler32_of
from ctaprod.core.errors import InvalidInput, NotFound, Unavailable
from ctaprod.core.settings import StorageElementConfig
from ctaprod.resources.storage.base import (
    CHUNK_SIZE,
    StorageElement,
    local_source,
    normalise_path,
    normalise_prefix,
)

__all__ = ["MIN_PART_SIZE", "S3StorageElement"]

MIN_PART_SIZE = 5 * 1024 * 1024  # the S3 minimum for all parts but the last
DEFAULT_PART_SIZE = 16 * 1024 * 1024
MAX_COPY_SIZE = 5 * 1024**3  # the S3 limit of one CopyObject (and of one part)
MAX_PARTS = 10_000
METADATA_KEY = "adler32"  # sent as the header x-amz-meta-adler32

_MISSING = frozenset({"404", "NoSuchKey", "NotFound"})
_CREDENTIALS = frozenset(
    {
        "SignatureDoesNotMatch",
        "InvalidAccessKeyId",
        "InvalidToken",
        "ExpiredToken",
        "InvalidSecurity",
        "AuthorizationHeaderMalformed",
    }
)
_DENIED = frozenset({"403", "AccessDenied", "Forbidden", "AllAccessDisabled"})
_SESSION: dict[str, Any] = {}
_SESSION_LOCK = threading.Lock()
_PLAIN_ETAG = re.compile(r"^[0-9a-f]{32}(-[0-9]+)?$")
_HEX8 = re.compile(r"^[0-9a-fA-F]{1,8}$")


def _load_boto() -> tuple[Any, Any]:
    """``boto3`` and ``botocore`` (with its ``config`` and ``exceptions`` modules)."""
    try:
        import boto3
        import botocore
        import botocore.config
        import botocore.exceptions
    except ImportError as exc:
        raise Unavailable(
            "the S3 storage plugin needs boto3: pip install 'ctaprod[s3]'", plugin="s3"
        ) from exc
    return boto3, botocore


def _read_full(stream: IO[bytes], size: int) -> bytes:
    """Read ``size`` bytes, fewer only at the end of the stream."""
    parts: list[bytes] = []
    left = size
    while left > 0:
        chunk = stream.read(min(left, CHUNK_SIZE * 4))
        if not chunk:
            break
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


class _Digests:
    """ADLER32 of the whole content and MD5 of each part (for the S3 ETag)."""

    def __init__(self) -> None:
        self.adler = Adler32()
        self.part_md5: list[bytes] = []

    def add_part(self, data: bytes) -> None:
        self.adler.update(data)
        self.part_md5.append(hashlib.md5(data, usedforsecurity=False).digest())

    @property
    def size(self) -> int:
        return self.adler.size

    @property
    def adler32(self) -> str:
        return self.adler.hexdigest()

    def etag(self) -> str:
        """The ETag S3 gives the object: MD5 (one part) or MD5 of part MD5s + ``-N``."""
        if len(self.part_md5) <= 1:
            return (self.part_md5[0] if self.part_md5 else hashlib.md5(b"").digest()).hex()
        joined = hashlib.md5(b"".join(self.part_md5), usedforsecurity=False).hexdigest()
        return f"{joined}-{len(self.part_md5)}"


def _normalise_adler(value: object) -> str | None:
    if isinstance(value, str) and _HEX8.match(value.strip()):
        return f"{int(value.strip(), 16):08x}"
    return None


class _BodyReader(io.RawIOBase):
    """A boto3 ``StreamingBody`` as a raw stream; network errors become Unavailable."""

    def __init__(self, body: Any, se: S3StorageElement, path: str) -> None:
        self._body = body
        self._se = se
        self._path = path

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        with self._se._errors("read", self._path):
            data = self._body.read(len(view))
        count = len(data)
        view[:count] = data
        return count

    def readall(self) -> bytes:
        """The rest of the file, in large reads (the default reads 8 KiB at a time)."""
        parts = []
        buffer = bytearray(4 * CHUNK_SIZE)
        while count := self.readinto(buffer):
            parts.append(bytes(buffer[:count]))
        return b"".join(parts)

    def close(self) -> None:
        if not self.closed:
            with contextlib.suppress(Exception):
                self._body.close()
        super().close()


class S3StorageElement(StorageElement):
    """Objects in ``bucket`` under the key prefix ``base_path`` of an S3 endpoint."""

    def __init__(
        self,
        name: str,
        endpoint: str,
        bucket: str,
        base_path: str = "",
        *,
        access_key: str | None = None,
        secret_key: str | None = None,
        region: str = "us-east-1",
        part_size: int = DEFAULT_PART_SIZE,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        max_attempts: int = 2,
    ) -> None:
        super().__init__(name)
        endpoint = endpoint.strip().rstrip("/")
        if not re.match(r"^https?://[^/\s]+$", endpoint):
            raise InvalidInput(
                f"storage element {name}: S3 endpoint must look like http(s)://host[:port], "
                f"not {endpoint!r}",
                se=name,
                endpoint=endpoint,
            )
        if not re.match(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$", bucket or ""):
            raise InvalidInput(f"storage element {name}: bad bucket name {bucket!r}", se=name)
        prefix = PurePosixPath("/" + (base_path or "").strip())
        if ".." in prefix.parts or any(ord(c) < 32 for c in str(prefix)):
            raise InvalidInput(f"storage element {name}: bad base path {base_path!r}", se=name)
        if part_size < MIN_PART_SIZE:
            raise InvalidInput(
                f"storage element {name}: part_size must be at least {MIN_PART_SIZE} bytes",
                se=name,
            )
        self.endpoint = endpoint
        self.bucket = bucket
        self.prefix = str(prefix).strip("/")
        self.part_size = int(part_size)
        self.copy_limit = MAX_COPY_SIZE  # larger objects are renamed by a multipart copy
        access_key = access_key or os.environ.get("AWS_ACCESS_KEY_ID")
        secret_key = secret_key or os.environ.get("AWS_SECRET_ACCESS_KEY")
        if bool(access_key) != bool(secret_key):
            raise InvalidInput(
                f"storage element {name}: give both access_key and secret_key, or neither",
                se=name,
            )
        boto3, botocore = _load_boto()
        self._exc = botocore.exceptions
        settings: dict[str, Any] = {
            "s3": {"addressing_style": "path"},
            "connect_timeout": connect_timeout,
            "read_timeout": read_timeout,
            "retries": {"max_attempts": max(1, int(max_attempts)), "mode": "standard"},
        }
        if not access_key:  # no keys: anonymous requests (never the instance metadata)
            settings["signature_version"] = botocore.UNSIGNED
        # Clients are thread-safe, sessions are not: one shared session (it caches the
        # service model, which makes building a client ten times faster), used under a lock.
        with _SESSION_LOCK:
            session = _SESSION.setdefault("session", boto3.session.Session())
            self._client = session.client(
                "s3",
                endpoint_url=endpoint,
                region_name=region,
                aws_access_key_id=access_key or None,
                aws_secret_access_key=secret_key or None,
                config=botocore.config.Config(**settings),
            )

    @classmethod
    def from_config(cls, name: str, config: StorageElementConfig) -> S3StorageElement:
        """Build from configuration: ``endpoint``, ``base_path`` (key prefix) and options
        ``bucket``, ``access_key`` and ``secret_key`` (or ``access_key_env`` and
        ``secret_key_env``: names of environment variables holding them; without keys,
        ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, else anonymous requests),
        ``region``, ``part_size``, ``connect_timeout``, ``read_timeout``, ``max_attempts``."""
        options = dict(config.options)
        if not config.endpoint:
            raise InvalidInput(
                f"storage element {name}: the s3 plugin needs an endpoint (http://host:port)",
                se=name,
            )
        bucket = options.pop("bucket", "")
        if not bucket:
            raise InvalidInput(
                f"storage element {name}: the s3 plugin needs options.bucket", se=name
            )
        for option in ("access_key", "secret_key"):  # secrets kept out of the configuration
            variable = options.pop(f"{option}_env", None)
            if variable:
                if not os.environ.get(str(variable)):
                    raise Unavailable(
                        f"storage element {name}: environment variable {variable} "
                        f"(options.{option}_env) is not set",
                        se=name,
                        reason="credentials",
                    )
                options[option] = os.environ[str(variable)]
        known = {
            "access_key": str,
            "secret_key": str,
            "region": str,
            "part_size": int,
            "connect_timeout": float,
            "read_timeout": float,
            "max_attempts": int,
        }
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise InvalidInput(
                f"storage element {name}: unknown s3 options {unknown}", se=name, options=unknown
            )
        kwargs = {key: known[key](value) for key, value in options.items()}
        return cls(name, config.endpoint, str(bucket), config.base_path, **kwargs)

    # -- keys and errors ---------------------------------------------------------------------

    def _key(self, path: str) -> str:
        relative = normalise_path(path)
        return f"{self.prefix}/{relative}" if self.prefix else relative

    @contextlib.contextmanager
    def _errors(self, action: str, path: str) -> Iterator[None]:
        """Turn botocore errors into domain errors."""
        try:
            yield
        except self._exc.ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            text = str(error.get("Message", "")) or code
            if code in _MISSING:
                raise NotFound(f"{self.name}: no file {path!r}", se=self.name, path=path) from None
            if code == "NoSuchBucket":
                raise Unavailable(
                    f"{self.name}: bucket {self.bucket!r} does not exist on {self.endpoint}",
                    se=self.name,
                    path=path,
                    reason="no_bucket",
                ) from None
            if code in _CREDENTIALS or code in _DENIED:
                raise Unavailable(
                    f"{self.name}: {self.endpoint} refused the credentials or the permission "
                    f"to {action} {path!r} ({code}: {text}); check the access and secret "
                    "keys of the storage element",
                    se=self.name,
                    path=path,
                    reason="credentials",
                ) from None
            raise Unavailable(
                f"{self.name}: cannot {action} {path!r} on {self.endpoint}: {code}: {text}",
                se=self.name,
                path=path,
            ) from exc
        except self._exc.NoCredentialsError as exc:
            raise Unavailable(
                f"{self.name}: no S3 credentials configured", se=self.name, reason="credentials"
            ) from exc
        except self._exc.ParamValidationError as exc:
            raise InvalidInput(f"{self.name}: bad S3 request for {path!r}: {exc}") from exc
        except self._exc.BotoCoreError as exc:
            raise Unavailable(
                f"{self.name}: cannot {action} {path!r}: {self.endpoint} unreachable ({exc})",
                se=self.name,
                path=path,
            ) from exc

    def _head(self, path: str) -> dict[str, Any] | None:
        """HEAD of the object at ``path``, None when it does not exist."""
        try:
            with self._errors("stat", path):
                head: dict[str, Any] = self._client.head_object(
                    Bucket=self.bucket, Key=self._key(path)
                )
        except NotFound:
            return None
        return head

    def _stored_checksum(self, path: str) -> str:
        """The ADLER32 stored with the object, or computed from its data."""
        head = self._head(path)
        if head is None:
            raise NotFound(f"{self.name}: no file {path!r}", se=self.name, path=path)
        stored = _normalise_adler(head.get("Metadata", {}).get(METADATA_KEY))
        if stored is not None:
            return stored
        with self.open(path) as stream:
            return adler32_of(stream, CHUNK_SIZE * 4)

    def _mismatch(self, path: str, where: str, what: str, expected: str, actual: str) -> NoReturn:
        raise Unavailable(
            f"{self.name}: {what} mismatch for {path!r} after {where}: expected {expected}, "
            f"got {actual}; the bad copy was deleted",
            se=self.name,
            path=path,
            reason="checksum_mismatch",
            expected=expected,
            actual=actual,
        )

    # -- the StorageElement interface ------------------------------------------------------

    def put(self, path: str, source: BinaryIO | Path) -> int:
        """Upload ``source`` (one PUT, or a multipart upload above ``part_size``), verify."""
        key = self._key(path)
        seekable = isinstance(source, (str, os.PathLike))  # a local file can be re-read
        with local_source(source) as stream:
            digests = self._upload(path, key, stream, seekable=seekable)
        self._verify_upload(path, key, digests)
        return digests.size

    def _upload(self, path: str, key: str, stream: IO[bytes], *, seekable: bool) -> _Digests:
        digests = _Digests()
        first = _read_full(stream, self.part_size)
        if len(first) < self.part_size:
            digests.add_part(first)
            with self._errors("write", path):
                self._client.put_object(
                    Bucket=self.bucket,
                    Key=key,
                    Body=first,
                    ContentMD5=base64.b64encode(digests.part_md5[0]).decode(),
                    Metadata={METADATA_KEY: digests.adler32},
                )
            return digests
        with contextlib.ExitStack() as stack:
            # The checksum goes in the metadata, which S3 takes before the data: read the
            # source once to compute it (a stream is kept in a temporary file meanwhile).
            if seekable:
                data = stream
                start = stream.tell() - len(first)
            else:
                data = stack.enter_context(tempfile.TemporaryFile(prefix="ctaprod-s3-"))
                data.write(first)
                start = 0
            digests.add_part(first)
            while part := _read_full(stream, self.part_size):
                digests.add_part(part)
                if not seekable:
                    data.write(part)
            data.seek(start)
            self._multipart(path, key, data, digests)
        return digests

    def _multipart(self, path: str, key: str, data: IO[bytes], digests: _Digests) -> None:
        with self._errors("write", path):
            upload = self._client.create_multipart_upload(
                Bucket=self.bucket, Key=key, Metadata={METADATA_KEY: digests.adler32}
            )
        upload_id = upload["UploadId"]
        try:
            parts = []
            for number, md5 in enumerate(digests.part_md5, start=1):
                body = _read_full(data, self.part_size)
                if hashlib.md5(body, usedforsecurity=False).digest() != md5:
                    raise Unavailable(
                        f"{self.name}: the source of {path!r} changed during the upload",
                        se=self.name,
                        path=path,
                    )
                with self._errors("write", path):
                    answer = self._client.upload_part(
                        Bucket=self.bucket,
                        Key=key,
                        UploadId=upload_id,
                        PartNumber=number,
                        Body=body,
                        ContentMD5=base64.b64encode(md5).decode(),
                    )
                parts.append({"ETag": answer["ETag"], "PartNumber": number})
            with self._errors("write", path):
                self._client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                )
        except BaseException:
            with contextlib.suppress(Exception):
                self._client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            raise

    def _verify_upload(self, path: str, key: str, digests: _Digests) -> None:
        """Compare what the server holds with what was sent; delete it if they differ."""
        head = self._head(path)
        problem: tuple[str, str, str] | None = None
        if head is None:
            raise Unavailable(
                f"{self.name}: {path!r} is missing right after its upload",
                se=self.name,
                path=path,
            )
        etag = str(head.get("ETag", "")).strip('"').lower()
        stored = _normalise_adler(head.get("Metadata", {}).get(METADATA_KEY))
        if int(head.get("ContentLength", -1)) != digests.size:
            problem = ("size", str(digests.size), str(head.get("ContentLength")))
        elif _PLAIN_ETAG.match(etag) and etag != digests.etag():
            problem = ("ETag (MD5)", digests.etag(), etag)
        elif stored != digests.adler32:
            problem = ("adler32", digests.adler32, str(stored))
        if problem is not None:
            with contextlib.suppress(Exception):
                self._client.delete_object(Bucket=self.bucket, Key=key)
            self._mismatch(path, "upload", *problem)

    def get(self, path: str, dest: Path) -> None:
        """Download to a temporary file next to ``dest``, verify ADLER32, rename."""
        dest = Path(dest)
        with self._errors("read", path):
            answer = self._client.get_object(Bucket=self.bucket, Key=self._key(path))
        expected = _normalise_adler(answer.get("Metadata", {}).get(METADATA_KEY))
        etag = str(answer.get("ETag", "")).strip('"').lower()
        stream = io.BufferedReader(_BodyReader(answer["Body"], self, path), CHUNK_SIZE)
        with stream:
            try:
                dest.parent.mkdir(parents=True, exist_ok=True)
                fd, temporary = tempfile.mkstemp(
                    dir=dest.parent, prefix=f".{dest.name}.", suffix=".part"
                )
            except OSError as exc:
                raise Unavailable(f"cannot write {dest}: {exc}", path=str(dest)) from exc
            try:
                digest = Adler32()
                md5 = hashlib.md5(usedforsecurity=False)
                with os.fdopen(fd, "wb") as out:
                    while chunk := stream.read(CHUNK_SIZE * 4):
                        digest.update(chunk)
                        md5.update(chunk)
                        try:
                            out.write(chunk)
                        except OSError as exc:
                            raise Unavailable(f"cannot write {dest}: {exc}") from exc
                    out.flush()
                    os.fsync(out.fileno())
                local = digest.hexdigest()
                if expected is not None and expected != local:
                    self._mismatch(path, "download", "adler32", expected, local)
                plain_md5 = re.match(r"^[0-9a-f]{32}$", etag) is not None
                if expected is None and plain_md5 and md5.hexdigest() != etag:
                    self._mismatch(path, "download", "ETag (MD5)", etag, md5.hexdigest())
                os.replace(temporary, dest)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise

    def open(self, path: str) -> BinaryIO:
        """A buffered binary read stream on the object (the caller closes it)."""
        with self._errors("open", path):
            answer = self._client.get_object(Bucket=self.bucket, Key=self._key(path))
        return io.BufferedReader(_BodyReader(answer["Body"], self, path), CHUNK_SIZE)

    def remove(self, path: str) -> bool:
        """Delete the object; False if there was none."""
        if self._head(path) is None:
            return False
        with self._errors("remove", path):
            self._client.delete_object(Bucket=self.bucket, Key=self._key(path))
        return True

    def rename(self, src_path: str, dst_path: str) -> None:
        """Server-side copy of ``src_path`` to ``dst_path`` (user metadata, hence the stored
        ADLER32, carried over; a multipart copy above :attr:`copy_limit`), checked, then
        the source deleted.  Not atomic: if the copy or the deletion fails, the copy is
        deleted (best effort) and the file stays at ``src_path``."""
        src_key, dst_key = self._key(src_path), self._key(dst_path)
        head = self._head(src_path)
        if head is None:
            raise NotFound(f"{self.name}: no file {src_path!r}", se=self.name, path=src_path)
        size = int(head["ContentLength"])
        metadata = dict(head.get("Metadata", {}))
        source = {"Bucket": self.bucket, "Key": src_key}
        etag = str(head.get("ETag", ""))  # copy exactly the object just seen
        try:
            with self._errors(f"rename to {dst_path!r}", src_path):
                if size <= self.copy_limit:
                    self._client.copy_object(
                        Bucket=self.bucket,
                        Key=dst_key,
                        CopySource=source,
                        CopySourceIfMatch=etag,
                        MetadataDirective="REPLACE",
                        Metadata=metadata,
                    )
                else:
                    self._multipart_copy(source, etag, dst_key, size, metadata)
            copied = self._head(dst_path)
            if copied is None or int(copied.get("ContentLength", -1)) != size:
                found = "nothing" if copied is None else f"{copied.get('ContentLength')} bytes"
                self._mismatch(dst_path, "rename", "size", str(size), found)
            expected = _normalise_adler(metadata.get(METADATA_KEY))
            stored = _normalise_adler(copied.get("Metadata", {}).get(METADATA_KEY))
            if stored != expected:
                self._mismatch(dst_path, "rename", "adler32", str(expected), str(stored))
            with self._errors(f"rename to {dst_path!r}", src_path):
                self._client.delete_object(Bucket=self.bucket, Key=src_key)
        except BaseException:
            with contextlib.suppress(Exception):
                self._client.delete_object(Bucket=self.bucket, Key=dst_key)
            raise

    def _multipart_copy(
        self, source: dict[str, str], etag: str, key: str, size: int, metadata: dict[str, str]
    ) -> None:
        """Copy ``source`` (``size`` bytes) to ``key`` in parts (S3 copies at most 5 GiB
        in one request)."""
        part = min(max(self.part_size, -(-size // MAX_PARTS)), MAX_COPY_SIZE)
        upload = self._client.create_multipart_upload(
            Bucket=self.bucket, Key=key, Metadata=metadata
        )
        upload_id = upload["UploadId"]
        try:
            parts = []
            for number, start in enumerate(range(0, size, part), start=1):
                end = min(start + part, size) - 1
                answer = self._client.upload_part_copy(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=number,
                    CopySource=source,
                    CopySourceIfMatch=etag,
                    CopySourceRange=f"bytes={start}-{end}",
                )
                parts.append({"ETag": answer["CopyPartResult"]["ETag"], "PartNumber": number})
            self._client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            with contextlib.suppress(Exception):
                self._client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            raise

    def exists(self, path: str) -> bool:
        """Whether an object exists at ``path``."""
        return self._head(path) is not None

    def size(self, path: str) -> int:
        """Size in bytes of the object."""
        head = self._head(path)
        if head is None:
            raise NotFound(f"{self.name}: no file {path!r}", se=self.name, path=path)
        return int(head["ContentLength"])

    def checksum(self, path: str) -> str:
        """ADLER32 of the object (stored metadata, else computed from the data)."""
        return self._stored_checksum(path)

    def list(self, prefix: str) -> Iterator[tuple[str, int]]:
        """Objects whose keys start with ``<base>/<prefix>/``, through the
        ``list_objects_v2`` paginator (1,000 keys a page, in key order)."""
        relative = normalise_prefix(prefix)
        if relative:
            start = f"{self.prefix}/{relative}/" if self.prefix else f"{relative}/"
        else:
            start = f"{self.prefix}/" if self.prefix else ""
        return self._walk(start, relative)

    def _walk(self, start: str, relative: str) -> Iterator[tuple[str, int]]:
        skip = len(f"{self.prefix}/") if self.prefix else 0
        paginator = self._client.get_paginator("list_objects_v2")
        pages = iter(paginator.paginate(Bucket=self.bucket, Prefix=start))
        while True:
            with self._errors("list", "/" + relative):
                page = next(pages, None)
            if page is None:
                return
            for item in page.get("Contents", ()):
                key = str(item["Key"])
                if key.endswith("/"):  # a "directory" marker made by another tool
                    continue
                yield "/" + key[skip:], int(item["Size"])

    def modified(self, path: str) -> datetime | None:
        """``LastModified`` of the object (UTC)."""
        head = self._head(path)
        if head is None:
            raise NotFound(f"{self.name}: no file {path!r}", se=self.name, path=path)
        stamp = head.get("LastModified")
        if not isinstance(stamp, datetime):
            return None
        return stamp.astimezone(UTC) if stamp.tzinfo else stamp.replace(tzinfo=UTC)

    def url(self, path: str) -> str:
        """``s3://bucket/key``."""
        return f"s3://{self.bucket}/{self._key(path)}"
