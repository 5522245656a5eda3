"""Archive bombs: member count and unpacked size capped while the archive is read as a
stream (gzip, bzip2, xz), without trusting what the tar headers claim."""

from __future__ import annotations

import bz2
import io
import lzma
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from ctaprod.core.archive import check_members, safe_extract
from ctaprod.core.errors import InvalidInput, TooLarge

MB = 1024 * 1024


def _tar(members: list[tuple[str, bytes]], pax: dict[str, str] | None = None) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            if pax:
                info.pax_headers = pax
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


@pytest.mark.parametrize("compress", [bz2.compress, lzma.compress])
def test_a_small_compressed_archive_that_unpacks_big_is_refused(
    tmp_path: Path, compress: Callable[[bytes], bytes]
) -> None:
    archive = tmp_path / "bomb.tar"
    archive.write_bytes(compress(_tar([("zeros", bytes(30 * MB))])))
    assert archive.stat().st_size < 100_000
    with pytest.raises(TooLarge, match=r"exceeds|unpacks"):
        check_members(archive, max_total_size=10 * MB)
    with pytest.raises(TooLarge):
        safe_extract(archive, tmp_path / "out", max_total_size=10 * MB)
    assert not (tmp_path / "out").exists()


def test_a_huge_extended_header_is_refused_while_read(tmp_path: Path) -> None:
    # The file claims 0 bytes; its pax header holds 20 MB: only the stream count sees it.
    archive = tmp_path / "pax.tar.bz2"
    archive.write_bytes(bz2.compress(_tar([("f", b"")], pax={"comment": "x" * (20 * MB)})))
    with pytest.raises(TooLarge, match="unpacks to more than"):
        check_members(archive, max_members=10, max_total_size=1 * MB)


def test_too_many_members_are_refused(tmp_path: Path) -> None:
    archive = tmp_path / "many.tar.xz"
    archive.write_bytes(lzma.compress(_tar([(f"f{i}", b"") for i in range(50)])))
    with pytest.raises(InvalidInput, match="more than 20 members"):
        check_members(archive, max_members=20)
    assert len(check_members(archive, max_members=50)) == 50


def test_errors_never_name_the_server_path(tmp_path: Path) -> None:
    archive = tmp_path / "junk.tar.gz"
    archive.write_bytes(b"\x1f\x8b" + b"junk" * 100)
    with pytest.raises(InvalidInput) as info:
        check_members(archive)
    assert str(tmp_path) not in info.value.message
    assert str(tmp_path) not in str(info.value.detail)
