"""The POSIX storage element and the storage plugin registry, on real files."""

from __future__ import annotations

import io
import os
import zlib
from pathlib import Path

import pytest

from ctaprod.core.errors import InvalidInput, NotFound, Unavailable
from ctaprod.core.settings import StorageElementConfig
from ctaprod.resources.storage import (
    STORAGE_PLUGINS,
    PosixStorageElement,
    StorageElement,
    adler32_of,
    create_storage_element,
    register_storage_plugin,
)

PAYLOAD = os.urandom(3 * 1024 * 1024 + 17)  # spans several copy chunks


@pytest.fixture
def se(tmp_path: Path) -> PosixStorageElement:
    return PosixStorageElement("TestSE", tmp_path / "se")


def test_put_get_open_size_checksum(se: PosixStorageElement, tmp_path: Path) -> None:
    assert se.put("/ctao/sandboxes/ab/x.tar.gz", io.BytesIO(PAYLOAD)) == len(PAYLOAD)
    assert (tmp_path / "se" / "ctao" / "sandboxes" / "ab" / "x.tar.gz").read_bytes() == PAYLOAD
    assert se.exists("ctao/sandboxes/ab/x.tar.gz")  # leading '/' is optional
    assert se.size("/ctao/sandboxes/ab/x.tar.gz") == len(PAYLOAD)
    expected = f"{zlib.adler32(PAYLOAD) & 0xFFFFFFFF:08x}"
    assert se.checksum("/ctao/sandboxes/ab/x.tar.gz") == expected
    with se.open("/ctao/sandboxes/ab/x.tar.gz") as stream:
        assert stream.read() == PAYLOAD
    se.get("/ctao/sandboxes/ab/x.tar.gz", tmp_path / "copy" / "x.tar.gz")
    assert (tmp_path / "copy" / "x.tar.gz").read_bytes() == PAYLOAD
    assert se.url("/ctao/sandboxes/ab/x.tar.gz") == (
        (tmp_path / "se" / "ctao/sandboxes/ab/x.tar.gz").as_uri()
    )


def test_put_from_path_and_overwrite(se: PosixStorageElement, tmp_path: Path) -> None:
    source = tmp_path / "local.txt"
    source.write_bytes(b"first")
    assert se.put("f.txt", source) == 5
    assert se.put("f.txt", io.BytesIO(b"second!")) == 7
    with se.open("f.txt") as stream:
        assert stream.read() == b"second!"
    with pytest.raises(NotFound):
        se.put("g.txt", tmp_path / "missing")


def test_checksum_format() -> None:
    assert adler32_of(io.BytesIO(b"")) == "00000001"
    assert adler32_of(io.BytesIO(b"a")) == f"{zlib.adler32(b'a'):08x}"
    assert len(adler32_of(io.BytesIO(PAYLOAD))) == 8


def test_remove_and_not_found(se: PosixStorageElement) -> None:
    se.put("dir/file", io.BytesIO(b"x"))
    assert se.remove("dir/file") is True
    assert se.remove("dir/file") is False
    assert not se.exists("dir/file")
    for call in (se.size, se.checksum, se.open):
        with pytest.raises(NotFound):
            call("dir/file")
    with pytest.raises(NotFound):
        se.get("dir/file", Path("/nonexistent/x"))
    with pytest.raises(NotFound):
        se.size("dir")  # a directory is not a file


@pytest.mark.parametrize(
    "path", ["../escape", "/a/../../escape", "a/..", "", "/", "a\x00b", "a\nb", "tab\there"]
)
def test_path_escape_refused(se: PosixStorageElement, path: str) -> None:
    with pytest.raises(InvalidInput):
        se.put(path, io.BytesIO(b"x"))
    with pytest.raises(InvalidInput):
        se.exists(path)


def test_symlink_out_of_base_refused(se: PosixStorageElement, tmp_path: Path) -> None:
    se.put("inside", io.BytesIO(b"x"))
    (tmp_path / "outside").mkdir()
    (tmp_path / "se" / "link").symlink_to(tmp_path / "outside")
    with pytest.raises(InvalidInput, match="outside"):
        se.put("link/file", io.BytesIO(b"x"))
    assert list((tmp_path / "outside").iterdir()) == []


class _Broken(io.RawIOBase):
    """A stream that delivers some data, then fails like a cut connection."""

    def __init__(self, good: int) -> None:
        self.left = good

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self.left <= 0:
            raise ConnectionResetError("connection cut")
        n = min(self.left, 1024 * 1024 if size < 0 else size)
        self.left -= n
        return b"z" * n


def test_put_is_atomic(se: PosixStorageElement, tmp_path: Path) -> None:
    with pytest.raises(ConnectionResetError):
        se.put("a/b/partial.bin", _Broken(2 * 1024 * 1024))  # type: ignore[arg-type]
    assert not se.exists("a/b/partial.bin")
    assert list((tmp_path / "se" / "a" / "b").iterdir()) == []  # no temporary left over
    se.put("a/b/kept.bin", io.BytesIO(b"old"))
    with pytest.raises(ConnectionResetError):
        se.put("a/b/kept.bin", _Broken(10))  # type: ignore[arg-type]
    with se.open("a/b/kept.bin") as stream:
        assert stream.read() == b"old"
    assert sorted(p.name for p in (tmp_path / "se" / "a" / "b").iterdir()) == ["kept.bin"]


def test_unreachable_base(tmp_path: Path) -> None:
    (tmp_path / "notadir").write_text("x")
    se = PosixStorageElement("Broken", tmp_path / "notadir")
    with pytest.raises(Unavailable):
        se.put("f", io.BytesIO(b"x"))


def test_registry(tmp_path: Path) -> None:
    se = create_storage_element("S", StorageElementConfig(plugin="posix", base_path=str(tmp_path)))
    assert isinstance(se, PosixStorageElement)
    assert se.name == "S"
    with pytest.raises(InvalidInput, match="posix"):
        create_storage_element("S", StorageElementConfig(plugin="gridftp"))
    with pytest.raises(InvalidInput, match="base_path"):
        create_storage_element("S", StorageElementConfig(plugin="posix"))

    def _custom(name: str, config: StorageElementConfig) -> StorageElement:
        return PosixStorageElement(name, config.options["root"])

    register_storage_plugin("TestPlugin", _custom)
    try:
        cfg = StorageElementConfig(plugin="testplugin", options={"root": str(tmp_path)})
        assert create_storage_element("T", cfg).name == "T"
    finally:
        del STORAGE_PLUGINS["testplugin"]
