"""The output sandbox: select the declared outputs, pack them, upload them.

Outputs are staged with hard links under the job directory (symbolic links are followed
only while they stay inside it), packed into one archive and uploaded with the job's token.
The wrapper's own files in the job directory are never part of it. An archive over the
server's size limit is made to fit rather than refused: declared output files are dropped,
largest first, then stdout and stderr lose more of their middle (:func:`_fit`); what was
left out is said in the archive's ``ctaprod_output_sandbox.txt`` and in the job's log.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from ctaprod.client.errors import ApiError, ServerUnreachable
from ctaprod.client.http import Client
from ctaprod.core.archive import make_archive
from ctaprod.core.errors import CtaprodError
from ctaprod.core.jobs import LFN_PREFIX, check_relative_name
from ctaprod.pilot.capped_output import trim_file
from ctaprod.pilot.config import RetryPolicy
from ctaprod.pilot.final_status import FINAL_FILE, JobGone

# The wrapper's logger: these lines are part of the job's story, as before they moved here.
logger = logging.getLogger("ctaprod.pilot.wrapper")

JOB_LOG = "job.log"  # the wrapper's log of the job, in the job directory
STAGE = ".output_sandbox"
OUTPUT_ARCHIVE = ".output_sandbox.tar.gz"
INTERNAL = frozenset({FINAL_FILE, f"{FINAL_FILE}.tmp", JOB_LOG, STAGE, OUTPUT_ARCHIVE})
FIT_NOTE = "ctaprod_output_sandbox.txt"  # in the archive, when something had to be left out
_FIT_ROUNDS = 8


def select_outputs(names: Sequence[str], job_dir: Path) -> tuple[list[str], list[str], list[str]]:
    """Declared outputs as (existing relative names, missing names, refused names).

    Glob patterns are expanded; ``LFN:`` entries (output data) are skipped; a name that
    leads outside the job directory (through a symbolic link) is refused.
    """
    root = job_dir.resolve()
    found: list[str] = []
    missing: list[str] = []
    refused: list[str] = []
    for name in names:
        if name.upper().startswith(LFN_PREFIX):
            continue
        try:
            check_relative_name(name, "output file")
        except ValueError:
            refused.append(name)
            continue
        if set(name) & set("*?["):
            hits = sorted(p.relative_to(job_dir).as_posix() for p in job_dir.glob(name))
        else:
            hits = [name] if os.path.lexists(job_dir / name) else []
        hits = [h for h in hits if h.split("/")[0] not in INTERNAL]
        if not hits:
            missing.append(name)
        for rel in hits:
            real = (job_dir / rel).resolve()
            if rel in found or rel in missing or rel in refused:
                continue
            if not real.is_relative_to(root):
                refused.append(rel)
            elif not real.exists():
                missing.append(rel)
            else:
                found.append(rel)
    return found, missing, refused


def _stage(src: Path, dst: Path, root: Path, skip: frozenset[Path], active: set[Path]) -> None:
    """Mirror ``src`` at ``dst`` with hard links (copies if linking fails), following
    symbolic links that stay under ``root`` and dropping the others."""
    real = src.resolve()
    if not real.is_relative_to(root):
        logger.warning("output %s points outside the job directory: left out", src)
    elif real in skip or real in active:
        return
    elif real.is_dir():
        dst.mkdir(parents=True, exist_ok=True)
        active.add(real)
        for child in sorted(real.iterdir()):
            _stage(child, dst / child.name, root, skip, active)
        active.discard(real)
    elif real.is_file() and not dst.exists():
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(real, dst)
        except OSError:
            shutil.copy2(real, dst)


def _files(stage: Path) -> list[Path]:
    return [p for p in stage.rglob("*") if p.is_file() and not p.is_symlink()]


def _fit(stage: Path, archive: Path, limit: int, streams: Sequence[str], job_id: int) -> str:
    """Re-pack ``stage`` until its archive is at most ``limit`` bytes: drop declared outputs
    (largest first), then cut more of the middle of the ``streams`` (stdout, stderr); the
    sha256 of the archive. Raises CtaprodError if it still cannot fit."""
    keep = {stage / name for name in streams}
    notes: list[str] = []
    for _ in range(_FIT_ROUNDS):
        size = archive.stat().st_size
        files = _files(stage)
        raw = sum(p.stat().st_size for p in files) or 1
        ratio = size / raw  # compressed bytes per staged byte, assumed alike for all files
        droppable = sorted(
            (p for p in files if p not in keep and p.name != FIT_NOTE),
            key=lambda p: p.stat().st_size,
            reverse=True,
        )
        if droppable:
            for path in droppable:
                length = path.stat().st_size
                path.unlink()  # a hard link into the job directory: the original stays
                notes.append(f"dropped {path.relative_to(stage).as_posix()} ({length} bytes)")
                raw -= length
                if raw * ratio <= 0.9 * limit:
                    break
        else:
            factor = 0.8 * limit / size
            for path in sorted(p for p in keep if p.is_file()):
                length = path.stat().st_size
                cut = trim_file(path, max(1024, int(length * factor)))
                if cut:
                    notes.append(f"cut {cut} more bytes from {path.name}")
        (stage / FIT_NOTE).write_text(
            f"The output sandbox was over the server's limit of {limit} bytes:\n"
            + "".join(f"- {note}\n" for note in notes)
        )
        sha = make_archive(sorted(stage.iterdir()), archive, base=stage)
        if archive.stat().st_size <= limit:
            break
    else:
        raise CtaprodError(f"the output sandbox cannot be made to fit {limit} bytes")
    for note in notes:
        logger.warning("job %d: output sandbox over %d bytes: %s", job_id, limit, note)
    return sha


def upload_outputs(
    client: Client,
    job_id: int,
    job_dir: Path,
    found: Sequence[str],
    retry: RetryPolicy,
    *,
    max_bytes: int | None = None,
    streams: Sequence[str] = (),
) -> str | None:
    """Pack the outputs ``found`` (relative names from :func:`select_outputs`) and upload
    them; a failure minor status, or None. JobGone if the server refuses the job's token.

    An archive over ``max_bytes`` is made to fit, keeping the ``streams`` (stdout, stderr:
    they lose more of their middle only when every other output is left out)."""
    stage, archive = job_dir / STAGE, job_dir / OUTPUT_ARCHIVE
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    try:
        root = job_dir.resolve()
        skip = frozenset(root / name for name in INTERNAL)
        for rel in found:
            _stage(job_dir / rel, stage / rel, root, skip, set())
        entries = sorted(stage.iterdir())
        if not entries:
            return None
        sha = make_archive(entries, archive, base=stage)
        if max_bytes is not None and archive.stat().st_size > max_bytes:
            sha = _fit(stage, archive, max_bytes, streams, job_id)
        retry.call(
            lambda: client.upload_sandbox(archive, sha, job_id=job_id),
            f"job {job_id}: output sandbox",
        )
        logger.info(
            "job %d: output sandbox SB:%s uploaded (%d bytes)",
            job_id,
            sha,
            archive.stat().st_size,
        )
    except ServerUnreachable:
        return "Output sandbox upload failed (server unreachable)"
    except ApiError as exc:
        if exc.status in (403, 404):
            raise JobGone(f"job {job_id}: {exc.message}") from exc
        logger.error("job %d: output sandbox upload failed: %s", job_id, exc)
        return f"Output sandbox upload failed (HTTP {exc.status})"
    except (CtaprodError, OSError) as exc:
        logger.error("job %d: cannot pack the output sandbox: %s", job_id, exc)
        return "Output sandbox could not be packed"
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        archive.unlink(missing_ok=True)
    return None
