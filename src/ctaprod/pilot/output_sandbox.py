"""The output sandbox: select the declared outputs, pack them, upload them.

Outputs are staged with hard links under the job directory (symbolic links are followed
only while they stay inside it), packed into one archive and uploaded with the job's token.
The wrapper's own files in the job directory are never part of it.
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
from ctaprod.pilot.config import RetryPolicy
from ctaprod.pilot.final_status import FINAL_FILE, JobGone

# The wrapper's logger: these lines are part of the job's story, as before they moved here.
logger = logging.getLogger("ctaprod.pilot.wrapper")

JOB_LOG = "job.log"  # the wrapper's log of the job, in the job directory
STAGE = ".output_sandbox"
OUTPUT_ARCHIVE = ".output_sandbox.tar.gz"
INTERNAL = frozenset({FINAL_FILE, f"{FINAL_FILE}.tmp", JOB_LOG, STAGE, OUTPUT_ARCHIVE})


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


def upload_outputs(
    client: Client, job_id: int, job_dir: Path, found: Sequence[str], retry: RetryPolicy
) -> str | None:
    """Pack the outputs ``found`` (relative names from :func:`select_outputs`) and upload
    them; a failure minor status, or None. JobGone if the server refuses the job's token."""
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
