"""One contract for every storage element plugin: POSIX, XRootD and S3, on real servers.

Each test runs once per plugin, on a fresh base path (a folder, an XRootD directory, an S3
key prefix).  The servers are started by the fixtures of tests/resources/servers.py.  The
``Backend`` classes hold what differs: how to build the SE, where its bytes really are (to
corrupt them), what is stored under its base (to see left-over temporaries) and how to get
an SE whose server is down.
"""

from __future__ import annotations

import abc
import contextlib
import io
import os
import subprocess
import sys
import time
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ctaprod.core.errors import InvalidInput, NotFound, Unavailable
from ctaprod.core.settings import StorageElementConfig
from ctaprod.resources.storage import (
    PosixStorageElement,
    StorageElement,
    create_storage_element,
    normalise_path,
)
from ctaprod.resources.storage.s3 import MIN_PART_SIZE, S3StorageElement
from ctaprod.resources.storage.xrootd import XRootDStorageElement, parse_checksum_answer
from tests.resources.servers import (  # noqa: F401 - fixtures, used through getfixturevalue
    S3Server,
    XRootDServer,
    free_ports,
    s3_server,
    start_xrootd,
    xrootd_server,
)

MiB = 1024 * 1024
BIG = os.urandom(5 * MiB + 512 * 1024 + 17)  # several copy chunks, two S3 parts
CONTENTS = {
    "empty": b"",
    "one-byte": b"\x00",
    "binary": bytes(range(256)) * 4 + b"\r\n\x00\xff",
    "big": BIG,
}
QUICK = 5.0  # seconds within which a down server must be reported


def adler(data: bytes) -> str:
    return f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"


def flip_byte(file: Path, *, keep_mtime: bool) -> None:
    """Change one byte of ``file`` in place (bit rot); optionally keep its mtime."""
    before = file.stat()
    with open(file, "r+b") as handle:
        first = handle.read(1)
        handle.seek(0)
        handle.write(bytes([first[0] ^ 0xFF]))
    if keep_mtime:
        os.utime(file, ns=(before.st_atime_ns, before.st_mtime_ns))
    else:
        os.utime(file, ns=(before.st_atime_ns, before.st_mtime_ns + 5 * 10**9))


class Backend(abc.ABC):
    name: str
    remote: bool  # a network server (every call can find it down)

    @abc.abstractmethod
    def make(self, base: str) -> StorageElement:
        """A storage element under the fresh base ``base``."""

    @abc.abstractmethod
    def config(self, base: str) -> StorageElementConfig:
        """The configuration that builds the same SE through the registry."""

    @abc.abstractmethod
    def listing(self, se: StorageElement) -> list[str]:
        """Everything stored under the SE base, temporaries and unfinished uploads too."""

    @abc.abstractmethod
    def corrupt(self, se: StorageElement, path: str) -> None:
        """Change the stored bytes of ``path`` the way the SE can notice (new checksum)."""

    def make_stale(self, se: StorageElement, path: str) -> bool:
        """Change the bytes but leave the SE's stored checksum; False if impossible."""
        return False

    def break_upload_check(self, se: StorageElement, monkeypatch: pytest.MonkeyPatch) -> bool:
        """Make the SE see a wrong checksum after an upload; False if it has no check."""
        return False

    @abc.abstractmethod
    @contextlib.contextmanager
    def down(self) -> Iterator[StorageElement]:
        """An SE whose server is down."""


class PosixBackend(Backend):
    name = "posix"
    remote = False

    def __init__(self, root: Path) -> None:
        self.root = root

    def make(self, base: str) -> StorageElement:
        return PosixStorageElement("POSIX-SE", self.root / base)

    def config(self, base: str) -> StorageElementConfig:
        return StorageElementConfig(plugin="posix", base_path=str(self.root / base))

    def _file(self, se: StorageElement, path: str) -> Path:
        assert isinstance(se, PosixStorageElement)
        return se.base_path / normalise_path(path)

    def listing(self, se: StorageElement) -> list[str]:
        assert isinstance(se, PosixStorageElement)
        if not se.base_path.exists():
            return []
        return sorted(
            str(p.relative_to(se.base_path)) for p in se.base_path.rglob("*") if p.is_file()
        )

    def corrupt(self, se: StorageElement, path: str) -> None:
        flip_byte(self._file(se, path), keep_mtime=False)

    @contextlib.contextmanager
    def down(self) -> Iterator[StorageElement]:
        (self.root / "not-a-dir").write_text("x")  # an unusable mount
        yield PosixStorageElement("POSIX-DOWN", self.root / "not-a-dir")


class XRootDBackend(Backend):
    name = "xrootd"
    remote = True

    def __init__(self, server: XRootDServer) -> None:
        self.server = server

    def make(self, base: str) -> StorageElement:
        return XRootDStorageElement("XROOTD-SE", self.server.endpoint, f"/{base}", timeout=10)

    def config(self, base: str) -> StorageElementConfig:
        return StorageElementConfig(
            plugin="xrootd", endpoint=self.server.endpoint, base_path=f"/{base}"
        )

    def _file(self, se: StorageElement, path: str) -> Path:
        assert isinstance(se, XRootDStorageElement)
        return self.server.data / se.base_path.lstrip("/") / normalise_path(path)

    def listing(self, se: StorageElement) -> list[str]:
        assert isinstance(se, XRootDStorageElement)
        base = self.server.data / se.base_path.lstrip("/")
        if not base.exists():
            return []
        return sorted(str(p.relative_to(base)) for p in base.rglob("*") if p.is_file())

    def corrupt(self, se: StorageElement, path: str) -> None:
        flip_byte(self._file(se, path), keep_mtime=False)  # new mtime: server recomputes

    def make_stale(self, se: StorageElement, path: str) -> bool:
        se.checksum(path)  # the server keeps it in an extended attribute with the mtime
        flip_byte(self._file(se, path), keep_mtime=True)
        return True

    def break_upload_check(self, se: StorageElement, monkeypatch: pytest.MonkeyPatch) -> bool:
        monkeypatch.setattr(se, "_stored_checksum", lambda remote, path: "0badc0de")
        return True

    @contextlib.contextmanager
    def down(self) -> Iterator[StorageElement]:
        private = start_xrootd()  # a server of its own, stopped after a first connection
        try:
            se = XRootDStorageElement("XROOTD-DOWN", private.endpoint, "/down", timeout=10)
            se.put("warm", io.BytesIO(b"x"))
            private.stop()
            yield se
        finally:
            private.cleanup()


class S3Backend(Backend):
    name = "s3"
    remote = True

    def __init__(self, server: S3Server) -> None:
        self.server = server
        self.client = server.client()

    def _options(self) -> dict[str, Any]:
        return {
            "bucket": self.server.bucket,
            "access_key": self.server.access_key,
            "secret_key": self.server.secret_key,
            "part_size": MIN_PART_SIZE,
            "connect_timeout": 2.0,
            "max_attempts": 1,
        }

    def make(self, base: str) -> StorageElement:
        options = self._options()
        bucket = options.pop("bucket")
        return S3StorageElement("S3-SE", self.server.endpoint, bucket, base, **options)

    def config(self, base: str) -> StorageElementConfig:
        return StorageElementConfig(
            plugin="s3", endpoint=self.server.endpoint, base_path=base, options=self._options()
        )

    def _key(self, se: StorageElement, path: str) -> str:
        assert isinstance(se, S3StorageElement)
        return f"{se.prefix}/{normalise_path(path)}"

    def listing(self, se: StorageElement) -> list[str]:
        assert isinstance(se, S3StorageElement)
        prefix = f"{se.prefix}/"
        listed = self.client.list_objects_v2(Bucket=se.bucket, Prefix=prefix)
        names = [item["Key"][len(prefix) :] for item in listed.get("Contents", [])]
        uploads = self.client.list_multipart_uploads(Bucket=se.bucket, Prefix=prefix)
        names += [f"(upload) {item['Key']}" for item in uploads.get("Uploads", [])]
        return sorted(names)

    def corrupt(self, se: StorageElement, path: str) -> None:
        # Rewritten behind the SE's back (another tool): data changed, no ADLER32 metadata.
        key = self._key(se, path)
        data = self.client.get_object(Bucket=self.server.bucket, Key=key)["Body"].read()
        self.client.put_object(
            Bucket=self.server.bucket, Key=key, Body=bytes([data[0] ^ 0xFF]) + data[1:]
        )

    def make_stale(self, se: StorageElement, path: str) -> bool:
        key = self._key(se, path)
        self.client.copy_object(
            Bucket=self.server.bucket,
            Key=key,
            CopySource={"Bucket": self.server.bucket, "Key": key},
            Metadata={"adler32": "0badc0de"},
            MetadataDirective="REPLACE",
        )
        return True

    def break_upload_check(self, se: StorageElement, monkeypatch: pytest.MonkeyPatch) -> bool:
        assert isinstance(se, S3StorageElement)
        real_head = se._head

        def lying_head(path: str) -> dict[str, Any] | None:
            head = real_head(path)
            if head is not None:
                head = {**head, "Metadata": {"adler32": "0badc0de"}}
            return head

        monkeypatch.setattr(se, "_head", lying_head)
        return True

    @contextlib.contextmanager
    def down(self) -> Iterator[StorageElement]:
        closed = free_ports(1)[0]  # nothing listens there
        options = self._options()
        bucket = options.pop("bucket")
        yield S3StorageElement("S3-DOWN", f"http://127.0.0.1:{closed}", bucket, "d", **options)


@pytest.fixture(params=["posix", "xrootd", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "posix":
        return PosixBackend(tmp_path)
    if request.param == "xrootd":
        return XRootDBackend(request.getfixturevalue("xrootd_server"))
    return S3Backend(request.getfixturevalue("s3_server"))


@pytest.fixture
def base() -> str:
    return f"contract-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def se(backend: Backend, base: str) -> StorageElement:
    return backend.make(base)


class _Broken(io.RawIOBase):
    """A source that delivers ``good`` bytes, then fails like a cut connection."""

    def __init__(self, good: int) -> None:
        self.left = good

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self.left <= 0:
            raise ConnectionResetError("connection cut")
        count = min(self.left, MiB if size < 0 else size)
        self.left -= count
        return b"z" * count


# -- the contract --------------------------------------------------------------------------


@pytest.mark.parametrize("content", list(CONTENTS.values()), ids=list(CONTENTS))
def test_round_trip(backend: Backend, se: StorageElement, tmp_path: Path, content: bytes) -> None:
    path = "/ctao/data/run1/file.bin"
    assert se.put(path, io.BytesIO(content)) == len(content)
    assert se.exists(path)
    assert se.exists(path.lstrip("/"))  # the leading '/' is optional
    assert se.size(path) == len(content)
    assert se.checksum(path) == adler(content)
    dest = tmp_path / "download" / "file.bin"
    se.get(path, dest)
    assert dest.read_bytes() == content
    assert sorted(p.name for p in dest.parent.iterdir()) == ["file.bin"]  # no temporary
    with se.open(path) as stream:
        assert stream.read() == content
    assert backend.listing(se) == ["ctao/data/run1/file.bin"]


def test_put_from_local_file(se: StorageElement, tmp_path: Path) -> None:
    local = tmp_path / "local.bin"
    local.write_bytes(BIG)
    assert se.put("from-path.bin", local) == len(BIG)
    assert se.checksum("from-path.bin") == adler(BIG)
    with pytest.raises(NotFound):
        se.put("other.bin", tmp_path / "missing.bin")
    assert not se.exists("other.bin")


def test_open_streams(se: StorageElement) -> None:
    se.put("stream.bin", io.BytesIO(BIG))
    with se.open("stream.bin") as stream:
        head = stream.read(1000)
        middle = stream.read(3 * MiB)
        rest = stream.read()
        assert stream.read() == b""
    assert head + middle + rest == BIG
    assert len(head) == 1000
    assert stream.closed


def test_remove_then_not_found(se: StorageElement, tmp_path: Path) -> None:
    se.put("dir/file", io.BytesIO(b"payload"))
    assert se.remove("dir/file") is True
    assert se.exists("dir/file") is False
    assert se.remove("dir/file") is False
    for call in (se.size, se.checksum, se.open):
        with pytest.raises(NotFound):
            call("dir/file")
    with pytest.raises(NotFound):
        se.get("dir/file", tmp_path / "out" / "file")
    assert not (tmp_path / "out" / "file").exists()


@pytest.mark.parametrize("content", [b"", b"small payload", BIG], ids=["empty", "small", "big"])
def test_rename(backend: Backend, se: StorageElement, content: bytes) -> None:
    se.put("up/load.tmp", io.BytesIO(content))
    se.rename("up/load.tmp", "/ctao/new/dir/final.bin")  # missing directories are created
    assert not se.exists("up/load.tmp")
    assert se.exists("ctao/new/dir/final.bin")
    assert se.size("ctao/new/dir/final.bin") == len(content)
    assert se.checksum("ctao/new/dir/final.bin") == adler(content)
    with se.open("/ctao/new/dir/final.bin") as stream:
        assert stream.read() == content
    assert backend.listing(se) == ["ctao/new/dir/final.bin"]


def test_rename_replaces_the_target(backend: Backend, se: StorageElement) -> None:
    se.put("d/final.bin", io.BytesIO(BIG))
    se.put("d/.final.bin~upload", io.BytesIO(b"newer"))
    se.rename("d/.final.bin~upload", "d/final.bin")
    assert se.size("d/final.bin") == 5
    assert se.checksum("d/final.bin") == adler(b"newer")
    assert backend.listing(se) == ["d/final.bin"]


def test_rename_of_a_missing_file(backend: Backend, se: StorageElement) -> None:
    se.put("kept.bin", io.BytesIO(b"kept"))
    with pytest.raises(NotFound):
        se.rename("not/there.bin", "kept.bin")
    se.put("a/b/c.bin", io.BytesIO(b"c"))
    with pytest.raises(NotFound):
        se.rename("a/b", "elsewhere")  # a directory (or key prefix) is not a file
    for bad in ("../escape", "a\x00b"):
        with pytest.raises(InvalidInput):
            se.rename("kept.bin", bad)
        with pytest.raises(InvalidInput):
            se.rename(bad, "kept.bin")
    assert se.checksum("kept.bin") == adler(b"kept")
    assert backend.listing(se) == ["a/b/c.bin", "kept.bin"]


def test_missing_and_directories(se: StorageElement) -> None:
    assert se.exists("never/written") is False
    with pytest.raises(NotFound):
        se.size("never/written")
    se.put("a/b/c/d.bin", io.BytesIO(b"deep"))
    assert se.exists("a/b") is False  # a directory (or key prefix) is not a file
    for call in (se.size, se.checksum, se.open):
        with pytest.raises(NotFound):
            call("a/b")
    se.put("plain", io.BytesIO(b"file"))
    assert se.exists("plain/below") is False  # below a file
    with pytest.raises(NotFound):
        se.size("plain/below")


def test_overwrite(backend: Backend, se: StorageElement) -> None:
    se.put("over.bin", io.BytesIO(BIG))
    se.put("over.bin", io.BytesIO(b"short"))
    assert se.size("over.bin") == 5
    assert se.checksum("over.bin") == adler(b"short")
    with se.open("over.bin") as stream:
        assert stream.read() == b"short"
    assert backend.listing(se) == ["over.bin"]


def test_nested_paths_and_urls(backend: Backend, se: StorageElement, base: str) -> None:
    se.put("/a/b/c/d.bin", io.BytesIO(b"1"))
    se.put("a/b/e.bin", io.BytesIO(b"22"))
    se.put("a/./b//f.bin", io.BytesIO(b"333"))
    assert se.size("a/b/c/d.bin") == 1
    assert se.size("/a/b/e.bin") == 2
    assert se.size("a/b/f.bin") == 3
    assert backend.listing(se) == ["a/b/c/d.bin", "a/b/e.bin", "a/b/f.bin"]
    url = se.url("/a/b/c/d.bin")
    scheme = {"posix": "file://", "xrootd": "root://", "s3": "s3://"}[backend.name]
    assert url.startswith(scheme)
    assert url.endswith(f"{base}/a/b/c/d.bin")


@pytest.mark.parametrize(
    "bad", ["../escape", "/a/../../escape", "a/..", "", "/", "a\x00b", "a\nb", "tab\there"]
)
def test_path_escape_refused(
    backend: Backend, se: StorageElement, tmp_path: Path, bad: str
) -> None:
    with pytest.raises(InvalidInput):
        se.put(bad, io.BytesIO(b"x"))
    for call in (se.exists, se.size, se.checksum, se.open, se.remove, se.url):
        with pytest.raises(InvalidInput):
            call(bad)
    with pytest.raises(InvalidInput):
        se.get(bad, tmp_path / "x")
    assert backend.listing(se) == []


def test_list(backend: Backend, se: StorageElement) -> None:
    files = {"/d/a.bin": b"", "/d/sub/b.bin": b"22", "/d/sub/deeper/c.bin": b"333"}
    for path, data in files.items():
        se.put(path, io.BytesIO(data))
    se.put("/dx/outside.bin", io.BytesIO(b"4444"))  # same leading characters, outside
    se.put("/top.bin", io.BytesIO(b"55555"))
    expected = {path: len(data) for path, data in files.items()}
    assert sorted(se.list("/d")) == sorted(expected.items())
    assert sorted(se.list("d/")) == sorted(expected.items())
    assert sorted(se.list("/d/sub")) == [("/d/sub/b.bin", 2), ("/d/sub/deeper/c.bin", 3)]
    everything = {**expected, "/dx/outside.bin": 4, "/top.bin": 5}
    assert sorted(se.list("/")) == sorted(everything.items())
    assert list(se.list("/nothing/here")) == []
    assert list(se.list("/d/sub/b.bin")) == []  # a file is not a directory
    stream = se.list("/d")
    assert not isinstance(stream, list)  # an iterator, read as it goes
    assert next(iter(stream))[0] in expected
    modified = se.modified("/d/a.bin")
    assert modified is not None
    assert modified.tzinfo is not None
    assert abs(time.time() - modified.timestamp()) < 120
    with pytest.raises(NotFound):
        se.modified("/d/missing.bin")


@pytest.mark.parametrize(
    "bad", ["../escape", "/a/../../escape", "a/..", "", "..", "a\x00b", "a\nb", "tab\there"]
)
def test_list_refuses_bad_prefixes(backend: Backend, se: StorageElement, bad: str) -> None:
    se.put("/a/kept.bin", io.BytesIO(b"x"))
    with pytest.raises(InvalidInput):
        se.list(bad)
    assert list(se.list("/a")) == [("/a/kept.bin", 1)]


def test_list_of_an_empty_se(backend: Backend, se: StorageElement) -> None:
    assert list(se.list("/")) == []  # nothing written yet: no base directory or prefix


@pytest.mark.parametrize("good", [0, 100 * 1024, 6 * MiB], ids=["at-once", "small", "large"])
def test_cut_upload_leaves_nothing(backend: Backend, se: StorageElement, good: int) -> None:
    with pytest.raises(ConnectionResetError):
        se.put("a/b/partial.bin", _Broken(good))  # type: ignore[arg-type]
    assert not se.exists("a/b/partial.bin")
    assert backend.listing(se) == []
    se.put("a/b/kept.bin", io.BytesIO(b"old"))
    with pytest.raises(ConnectionResetError):
        se.put("a/b/kept.bin", _Broken(good))  # type: ignore[arg-type]
    with se.open("a/b/kept.bin") as stream:
        assert stream.read() == b"old"
    assert backend.listing(se) == ["a/b/kept.bin"]


def test_down_server_is_unavailable_quickly(backend: Backend, tmp_path: Path) -> None:
    with backend.down() as down:
        calls: list[tuple[str, Any]] = [
            ("put", lambda: down.put("f", io.BytesIO(b"x"))),
            ("list", lambda: list(down.list("/"))),  # never "nothing there"
        ]
        if backend.remote:  # a local file system is either there or not
            calls += [
                ("exists", lambda: down.exists("f")),
                ("size", lambda: down.size("f")),
                ("checksum", lambda: down.checksum("f")),
                ("open", lambda: down.open("f")),
                ("get", lambda: down.get("f", tmp_path / "f")),
                ("remove", lambda: down.remove("f")),
                ("rename", lambda: down.rename("f", "g")),
            ]
        for name, call in calls:
            start = time.monotonic()
            with pytest.raises(Unavailable):
                call()
            assert time.monotonic() - start < QUICK, f"{name} took too long"
        assert not (tmp_path / "f").exists()


def test_corrupted_copy_changes_its_checksum(
    backend: Backend, se: StorageElement, tmp_path: Path
) -> None:
    """Changed bytes give a new checksum, which disagrees with the catalog's."""
    se.put("rot.bin", io.BytesIO(BIG))
    backend.corrupt(se, "rot.bin")
    assert se.checksum("rot.bin") != adler(BIG)
    se.get("rot.bin", tmp_path / "rot.bin")  # self-consistent: the download passes
    assert adler((tmp_path / "rot.bin").read_bytes()) == se.checksum("rot.bin")


def test_download_checked_against_stored_checksum(
    backend: Backend, se: StorageElement, tmp_path: Path
) -> None:
    se.put("stale.bin", io.BytesIO(BIG))
    if not backend.make_stale(se, "stale.bin"):
        pytest.skip(f"{backend.name} computes the checksum from the data: it cannot be stale")
    dest = tmp_path / "out" / "stale.bin"
    with pytest.raises(Unavailable, match=r"checksum|adler32") as caught:
        se.get("stale.bin", dest)
    assert caught.value.detail["reason"] == "checksum_mismatch"
    assert list(dest.parent.iterdir()) == []  # the bad copy is gone


def test_upload_checked_against_stored_checksum(
    backend: Backend, se: StorageElement, monkeypatch: pytest.MonkeyPatch
) -> None:
    se.put("old.bin", io.BytesIO(b"x"))
    if not backend.break_upload_check(se, monkeypatch):
        pytest.skip(f"{backend.name} writes locally with fsync: no transfer to verify")
    with pytest.raises(Unavailable, match="mismatch") as caught:
        se.put("bad.bin", io.BytesIO(BIG))
    assert caught.value.detail["reason"] == "checksum_mismatch"
    monkeypatch.undo()
    assert not se.exists("bad.bin")
    assert backend.listing(se) == ["old.bin"]


def test_registry_builds_it(backend: Backend, base: str) -> None:
    built = create_storage_element("CONFIGURED", backend.config(base))
    assert built.name == "CONFIGURED"
    built.put("via/config", io.BytesIO(b"abc"))
    assert built.checksum("via/config") == adler(b"abc")
    assert backend.make(base).exists("via/config")


# -- plugin specifics --------------------------------------------------------------------


def test_plugin_libraries_load_lazily() -> None:
    code = (
        "import sys, ctaprod.resources.storage, ctaprod.resources.storage.xrootd, "
        "ctaprod.resources.storage.s3\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('XRootD', 'boto3', 'botocore')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


def test_bad_configuration_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="endpoint"):
        create_storage_element("X", StorageElementConfig(plugin="xrootd"))
    with pytest.raises(InvalidInput, match="root://"):
        XRootDStorageElement("X", "http://127.0.0.1:1094", "/")
    with pytest.raises(InvalidInput, match="bucket"):
        create_storage_element("S", StorageElementConfig(plugin="s3", endpoint="http://h:1"))
    with pytest.raises(InvalidInput, match="unknown s3 options"):
        create_storage_element(
            "S",
            StorageElementConfig(
                plugin="s3", endpoint="http://h:1", options={"bucket": "b1", "colour": "red"}
            ),
        )
    with pytest.raises(InvalidInput, match="part_size"):
        S3StorageElement("S", "http://h:1", "bucket", part_size=1024)


def test_xrootd_checksum_answer() -> None:
    assert parse_checksum_answer(b"adler32 062c0215\x00") == "062c0215"
    assert parse_checksum_answer("ADLER32 62C0215") == "062c0215"
    with pytest.raises(ValueError):
        parse_checksum_answer(b"md5 d41d8cd98f00b204e9800998ecf8427e")


@pytest.fixture
def s3(request: pytest.FixtureRequest) -> S3Server:
    server: S3Server = request.getfixturevalue("s3_server")
    return server


def test_s3_bad_credentials(s3: S3Server) -> None:
    for access, secret in ((s3.access_key, "wrong-secret"), ("nobody", "wrong")):
        se = S3StorageElement(
            "S3-BADKEY",
            s3.endpoint,
            s3.bucket,
            "creds",
            access_key=access,
            secret_key=secret,
            max_attempts=1,
        )
        with pytest.raises(Unavailable, match="credentials") as caught:
            se.put("f", io.BytesIO(b"x"))
        assert caught.value.detail["reason"] == "credentials"
        with pytest.raises(Unavailable, match="credentials"):
            se.exists("f")


def test_s3_keys_from_environment(s3: S3Server, base: str, monkeypatch: pytest.MonkeyPatch) -> None:
    options = {"bucket": s3.bucket, "access_key_env": "T_KEY", "secret_key_env": "T_SECRET"}
    config = StorageElementConfig(
        plugin="s3", endpoint=s3.endpoint, base_path=base, options=options
    )
    with pytest.raises(Unavailable, match="T_KEY"):
        create_storage_element("S3-ENV", config)
    monkeypatch.setenv("T_KEY", s3.access_key)
    monkeypatch.setenv("T_SECRET", s3.secret_key)
    se = create_storage_element("S3-ENV", config)
    se.put("env.bin", io.BytesIO(b"keys from the environment"))
    assert se.exists("env.bin")


def test_s3_missing_bucket(s3: S3Server) -> None:
    se = S3StorageElement(
        "S3-NOBUCKET",
        s3.endpoint,
        "no-such-bucket",
        access_key=s3.access_key,
        secret_key=s3.secret_key,
    )
    with pytest.raises(Unavailable, match="bucket"):
        se.put("f", io.BytesIO(b"x"))


def test_s3_object_from_another_tool(s3: S3Server, base: str) -> None:
    """No ADLER32 metadata: the checksum is computed from the data, get checks the MD5."""
    client = s3.client()
    client.put_object(Bucket=s3.bucket, Key=f"{base}/foreign.bin", Body=BIG)
    se = S3Backend(s3).make(base)
    assert se.checksum("foreign.bin") == adler(BIG)
    assert se.size("foreign.bin") == len(BIG)


def test_s3_large_upload_is_multipart_with_metadata(s3: S3Server, base: str) -> None:
    se = S3Backend(s3).make(base)
    se.put("big.bin", io.BytesIO(BIG))
    head = s3.client().head_object(Bucket=s3.bucket, Key=f"{base}/big.bin")
    assert head["ETag"].strip('"').endswith("-2")  # two parts of MIN_PART_SIZE
    assert head["Metadata"] == {"adler32": adler(BIG)}  # sent as x-amz-meta-adler32


def test_s3_rename_keeps_the_checksum_metadata(s3: S3Server, base: str) -> None:
    """The stored ADLER32 goes with the object, also through a multipart copy."""
    se = S3Backend(s3).make(base)
    assert isinstance(se, S3StorageElement)
    se.copy_limit = MIN_PART_SIZE  # BIG is then copied in two parts
    se.put("big.tmp", io.BytesIO(BIG))
    se.rename("big.tmp", "big.bin")
    head = s3.client().head_object(Bucket=s3.bucket, Key=f"{base}/big.bin")
    assert head["Metadata"] == {"adler32": adler(BIG)}
    assert head["ContentLength"] == len(BIG)
    assert se.checksum("big.bin") == adler(BIG)
    se.put("small.tmp", io.BytesIO(b"small"))
    se.rename("small.tmp", "small.bin")
    head = s3.client().head_object(Bucket=s3.bucket, Key=f"{base}/small.bin")
    assert head["Metadata"] == {"adler32": adler(b"small")}
    assert S3Backend(s3).listing(se) == ["big.bin", "small.bin"]
