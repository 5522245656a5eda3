"""Sandbox archives: deterministic packing, hostile archives refused, safe extraction."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from ctaprod.core.archive import check_members, make_archive, safe_extract, sha256_file
from ctaprod.core.errors import InvalidInput, NotFound, TooLarge


def _tree(root: Path) -> list[Path]:
    (root / "data" / "sub").mkdir(parents=True)
    (root / "data" / "a.txt").write_text("alpha\n")
    (root / "data" / "sub" / "b.bin").write_bytes(bytes(range(256)) * 10)
    (root / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (root / "run.sh").chmod(0o755)
    return [root / "run.sh", root / "data"]


def test_identical_content_gives_identical_sha(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    files_one, files_two = _tree(one), _tree(two)
    os.utime(two / "run.sh", (1_000_000, 1_000_000))  # times must not matter
    sha1 = make_archive(files_one, tmp_path / "1.tar.gz")
    sha2 = make_archive(list(reversed(files_two)), tmp_path / "2.tar.gz")
    assert sha1 == sha2 == sha256_file(tmp_path / "2.tar.gz")
    assert (tmp_path / "1.tar.gz").read_bytes() == (tmp_path / "2.tar.gz").read_bytes()
    (two / "data" / "a.txt").write_text("beta\n")
    assert make_archive(files_two, tmp_path / "3.tar.gz") != sha1


def test_member_names_and_metadata(tmp_path: Path) -> None:
    files = _tree(tmp_path / "src")
    make_archive(files, tmp_path / "s.tar.gz")
    with tarfile.open(tmp_path / "s.tar.gz") as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == ["data", "data/a.txt", "data/sub", "data/sub/b.bin", "run.sh"]
    assert all(m.mtime == 0 and m.uid == 0 and m.uname == "" for m in members)
    assert {m.name: m.mode for m in members}["run.sh"] == 0o755
    assert check_members(tmp_path / "s.tar.gz") == names


def test_base_keeps_relative_paths(tmp_path: Path) -> None:
    _tree(tmp_path)
    make_archive([tmp_path / "data" / "sub" / "b.bin"], tmp_path / "b.tgz", base=tmp_path)
    assert check_members(tmp_path / "b.tgz") == ["data/sub/b.bin"]
    other = tmp_path.parent / f"{tmp_path.name}-elsewhere.txt"
    other.write_text("x")
    try:
        make_archive([other], tmp_path / "o.tgz", base=tmp_path)
        assert check_members(tmp_path / "o.tgz") == [other.name]
    finally:
        other.unlink()


def test_symlinks_and_missing_files_refused(tmp_path: Path) -> None:
    (tmp_path / "real").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(InvalidInput, match="link"):
        make_archive([tmp_path / "link"], tmp_path / "a.tgz")
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "inner").symlink_to("/etc/passwd")
    with pytest.raises(InvalidInput, match="inner"):
        make_archive([tmp_path / "dir"], tmp_path / "a.tgz")
    with pytest.raises(NotFound):
        make_archive([tmp_path / "nope"], tmp_path / "a.tgz")
    assert not (tmp_path / "a.tgz").exists()


def _hostile(path: Path, member: tarfile.TarInfo, content: bytes = b"") -> Path:
    with tarfile.open(path, "w:gz") as tar:
        good = tarfile.TarInfo("fine.txt")
        good.size = 2
        tar.addfile(good, io.BytesIO(b"ok"))
        member.size = len(content) if member.isreg() else 0
        tar.addfile(member, io.BytesIO(content) if member.isreg() else None)
    return path


def _member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


@pytest.mark.parametrize(
    ("member", "message"),
    [
        (_member("/etc/evil"), "absolute"),
        (_member("../evil"), r"'\.\.'"),
        (_member("ok/../../evil"), r"'\.\.'"),
        (_member("evil", tarfile.SYMTYPE, "/etc/passwd"), "symbolic link"),
        (_member("evil", tarfile.LNKTYPE, "fine.txt"), "hard link"),
        (_member("evil", tarfile.FIFOTYPE), "fifo"),
        (_member("evil", tarfile.CHRTYPE), "device"),
    ],
)
def test_hostile_members_rejected(tmp_path: Path, member: tarfile.TarInfo, message: str) -> None:
    archive = _hostile(tmp_path / "bad.tgz", member, b"pwned")
    with pytest.raises(InvalidInput, match=message) as caught:
        check_members(archive)
    assert member.name in caught.value.message
    assert caught.value.detail["member"] == member.name
    with pytest.raises(InvalidInput):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out" / "fine.txt").exists()
    assert not (tmp_path / "evil").exists()


def test_limits_and_garbage(tmp_path: Path) -> None:
    files = []
    for i in range(5):
        files.append(tmp_path / f"f{i}")
        files[-1].write_bytes(b"x" * 100)
    make_archive(files, tmp_path / "many.tgz")
    with pytest.raises(InvalidInput, match="more than 3 members"):
        check_members(tmp_path / "many.tgz", max_members=3)
    with pytest.raises(TooLarge):
        check_members(tmp_path / "many.tgz", max_total_size=450)
    (tmp_path / "junk.tgz").write_bytes(b"definitely not a tar archive" * 50)
    with pytest.raises(InvalidInput, match="not a valid tar"):
        check_members(tmp_path / "junk.tgz")
    data = (tmp_path / "many.tgz").read_bytes()
    (tmp_path / "cut.tgz").write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidInput, match="not a valid tar"):
        check_members(tmp_path / "cut.tgz")


def test_plain_tar_accepted(tmp_path: Path) -> None:
    with tarfile.open(tmp_path / "plain.tar", "w") as tar:
        info = tarfile.TarInfo("dir/x.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    assert check_members(tmp_path / "plain.tar") == ["dir/x.txt"]
    assert safe_extract(tmp_path / "plain.tar", tmp_path / "out") == ["dir/x.txt"]
    assert (tmp_path / "out" / "dir" / "x.txt").read_bytes() == b"abc"


def test_safe_extract_round_trip(tmp_path: Path) -> None:
    files = _tree(tmp_path / "src")
    make_archive(files, tmp_path / "s.tgz")
    names = safe_extract(tmp_path / "s.tgz", tmp_path / "out")
    assert "data/sub/b.bin" in names
    out = tmp_path / "out"
    assert (out / "data" / "a.txt").read_text() == "alpha\n"
    assert (out / "data" / "sub" / "b.bin").read_bytes() == bytes(range(256)) * 10
    assert os.access(out / "run.sh", os.X_OK)


def test_safe_extract_refuses_symlink_in_destination(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "data").symlink_to(outside)
    (tmp_path / "src" / "data").mkdir(parents=True)
    (tmp_path / "src" / "data" / "x").write_text("x")
    make_archive([tmp_path / "src" / "data" / "x"], tmp_path / "a.tgz", base=tmp_path / "src")
    with pytest.raises(InvalidInput, match="outside"):
        safe_extract(tmp_path / "a.tgz", dest)
    assert list(outside.iterdir()) == []
