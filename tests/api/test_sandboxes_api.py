"""Sandbox upload and download through the API: content addressing, limits, unsafe archives,
ownership, and output sandboxes attached by job wrappers."""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from ctaprod.core.archive import make_archive
from ctaprod.db.tables import sandboxes
from ctaprod.logic.sandboxes import storage_path
from tests.api.conftest import Api, Headers


def archive_bytes(tmp_path: Path, files: dict[str, str]) -> tuple[str, bytes]:
    src = tmp_path / f"src-{len(list(tmp_path.iterdir()))}"
    src.mkdir()
    for name, text in files.items():
        (src / name).write_text(text)
    dest = tmp_path / f"{src.name}.tar.gz"
    sha = make_archive(sorted(src.iterdir()), dest)
    return sha, dest.read_bytes()


def raw_tar(members: list[tarfile.TarInfo], payload: bytes = b"data") -> tuple[str, bytes]:
    """A tar.gz with hand-made (possibly malicious) members."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for member in members:
            if member.isreg():
                member.size = len(payload)
                tar.addfile(member, io.BytesIO(payload))
            else:
                tar.addfile(member)
    data = buf.getvalue()
    return hashlib.sha256(data).hexdigest(), data


def member(name: str, kind: bytes = tarfile.REGTYPE, target: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


def put(
    rest: Api, headers: Headers, sha: str, data: bytes | Iterator[bytes], **params: object
) -> httpx.Response:
    return rest.client.put(f"/api/sandboxes/{sha}", headers=headers, content=data, params=params)


def stored_rows(rest: Api) -> int:
    with rest.services.ctx.db.read() as conn:
        return int(conn.execute(select(func.count()).select_from(sandboxes)).scalar_one())


def on_storage(rest: Api, sha: str) -> bool:
    ctx = rest.services.ctx
    return bool(ctx.storage(ctx.settings.sandboxes.storage_element).exists(storage_path(sha)))


def test_upload_download_and_dedupe(
    rest: Api, alice: Headers, bob: Headers, tmp_path: Path
) -> None:
    sha, data = archive_bytes(tmp_path, {"run.sh": "echo hi\n", "conf.yaml": "a: 1\n"})
    assert rest.client.head(f"/api/sandboxes/{sha}", headers=alice).status_code == 404
    r = put(rest, alice, sha, data)
    assert r.status_code == 201
    assert r.json() == {
        "sha256": sha,
        "size": len(data),
        "reference": f"SB:{sha}",
    }
    assert rest.client.head(f"/api/sandboxes/{sha}", headers=alice).status_code == 200
    assert on_storage(rest, sha)
    got = rest.client.get(f"/api/sandboxes/{sha}", headers=alice)
    assert got.status_code == 200
    assert got.content == data
    # Uploading the same content again stores nothing new.
    assert put(rest, alice, sha, data).status_code == 201
    assert stored_rows(rest) == 1
    # Another user's copy is recorded for them (one stored file, two owners).
    assert rest.client.head(f"/api/sandboxes/{sha}", headers=bob).status_code == 404
    assert put(rest, bob, sha, data).status_code == 201
    assert rest.client.head(f"/api/sandboxes/{sha}", headers=bob).status_code == 200
    assert stored_rows(rest) == 2


def test_wrong_sha(rest: Api, alice: Headers, tmp_path: Path) -> None:
    sha, data = archive_bytes(tmp_path, {"a.txt": "a"})
    wrong = hashlib.sha256(b"something else").hexdigest()
    r = put(rest, alice, wrong, data)
    assert r.status_code == 400
    assert sha in r.json()["message"]
    assert rest.client.head(f"/api/sandboxes/{wrong}", headers=alice).status_code == 404
    assert stored_rows(rest) == 0
    assert not on_storage(rest, wrong)
    assert put(rest, alice, "not-a-sha", data).status_code == 400
    assert put(rest, alice, sha.upper(), data).status_code == 400
    assert rest.client.head("/api/sandboxes/xyz", headers=alice).status_code == 400


def test_empty_upload(rest: Api, alice: Headers) -> None:
    empty = hashlib.sha256(b"").hexdigest()
    assert put(rest, alice, empty, b"").status_code == 400


def test_size_limit(rest: Api, alice: Headers, tmp_path: Path) -> None:
    sha, data = archive_bytes(
        tmp_path,
        {
            "big.bin": "x" * 5000
            + "".join(hashlib.sha256(str(i).encode()).hexdigest() for i in range(200))
        },
    )
    rest.services.ctx.settings.sandboxes.max_bytes = len(data) - 1
    r = put(rest, alice, sha, data)  # declared with Content-Length
    assert r.status_code == 413
    assert r.json()["error"] == "too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while streaming
        for i in range(0, len(data), 1000):
            yield data[i : i + 1000]

    r = put(rest, alice, sha, chunks())
    assert r.status_code == 413
    assert stored_rows(rest) == 0
    assert not on_storage(rest, sha)
    rest.services.ctx.settings.sandboxes.max_bytes = len(data)
    assert put(rest, alice, sha, chunks()).status_code == 201


@pytest.mark.parametrize(
    "members",
    [
        [member("../escape.txt")],
        [member("ok/../../escape.txt")],
        [member("/etc/evil.txt")],
        [member("link", tarfile.SYMTYPE, "/etc/passwd")],
        [member("fine.txt"), member("link", tarfile.SYMTYPE, "fine.txt")],
        [member("hard", tarfile.LNKTYPE, "/etc/passwd")],
        [member("dev", tarfile.CHRTYPE)],
        [member("fifo", tarfile.FIFOTYPE)],
    ],
    ids=[
        "dotdot",
        "nested-dotdot",
        "absolute",
        "symlink",
        "relative-symlink",
        "hardlink",
        "device",
        "fifo",
    ],
)
def test_unsafe_archives_are_refused(
    rest: Api, alice: Headers, members: list[tarfile.TarInfo]
) -> None:
    sha, data = raw_tar(members)
    r = put(rest, alice, sha, data)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "invalid_input"
    assert stored_rows(rest) == 0
    assert not on_storage(rest, sha)
    assert rest.client.head(f"/api/sandboxes/{sha}", headers=alice).status_code == 404


def test_not_an_archive(rest: Api, alice: Headers) -> None:
    data = b"#!/bin/sh\necho not a tarball\n"
    r = put(rest, alice, hashlib.sha256(data).hexdigest(), data)
    assert r.status_code == 400
    assert stored_rows(rest) == 0


def test_another_users_sandbox(rest: Api, alice: Headers, bob: Headers, tmp_path: Path) -> None:
    sha, data = archive_bytes(tmp_path, {"secret.txt": "alice's"})
    put(rest, alice, sha, data)
    assert rest.client.get(f"/api/sandboxes/{sha}", headers=bob).status_code == 404
    r = rest.client.post(
        "/api/jobs",
        headers=bob,
        json={"documents": [{"Executable": "x", "InputSandbox": [f"SB:{sha}"]}]},
    )
    assert r.status_code == 404
    assert "not among your uploads" in r.json()["message"]
    assert rest.count_jobs() == 0
    # A JobAdministrator may read any sandbox.
    jobadmin = rest.user("carol", "ctao_jobadmin", ["NormalUser", "JobAdministrator"])
    assert rest.client.get(f"/api/sandboxes/{sha}", headers=jobadmin).content == data


def test_pilot_tokens_cannot_upload(rest: Api, tmp_path: Path) -> None:
    sha, data = archive_bytes(tmp_path, {"a": "a"})
    assert put(rest, rest.pilot, sha, data).status_code == 403
    assert stored_rows(rest) == 0


def test_input_and_output_sandboxes_of_a_job(
    rest: Api, alice: Headers, bob: Headers, tmp_path: Path
) -> None:
    in_sha, in_data = archive_bytes(tmp_path, {"run.sh": "echo run\n"})
    other_sha, other_data = archive_bytes(tmp_path, {"other.sh": "echo other\n"})
    put(rest, alice, in_sha, in_data)
    put(rest, alice, other_sha, other_data)
    job_id, job_token, _, _ = rest.matched_job(alice, InputSandbox=[f"SB:{in_sha}"])
    # The wrapper may fetch its job's input sandbox, and nothing else.
    assert rest.client.get(f"/api/sandboxes/{in_sha}", headers=job_token).content == in_data
    assert rest.client.get(f"/api/sandboxes/{other_sha}", headers=job_token).status_code == 404
    # It uploads the output sandbox and attaches it to its job.
    out_sha, out_data = archive_bytes(tmp_path, {"std.out": "hello\n"})
    r = put(rest, job_token, out_sha, out_data, job_id=job_id)
    assert r.status_code == 201
    got = rest.client.get(f"/api/jobs/{job_id}/output", headers=alice)
    assert got.status_code == 200
    assert got.content == out_data
    assert got.headers["x-sandbox-sha256"] == out_sha
    assert rest.client.get(f"/api/jobs/{job_id}/output", headers=bob).status_code == 404
    # A new upload replaces the previous output sandbox.
    out2_sha, out2_data = archive_bytes(tmp_path, {"std.out": "hello again\n"})
    assert put(rest, job_token, out2_sha, out2_data, job_id=job_id).status_code == 201
    assert rest.client.get(f"/api/jobs/{job_id}/output", headers=alice).content == out2_data
    # Another job's token, or a user token, cannot attach outputs to this job.
    other_job, other_token, _, _ = rest.matched_job(alice)
    assert put(rest, other_token, out_sha, out_data, job_id=job_id).status_code == 403
    assert put(rest, alice, out_sha, out_data, job_id=job_id).status_code == 403
    assert rest.client.get(f"/api/jobs/{job_id}/output", headers=alice).content == out2_data
    assert other_job != job_id
