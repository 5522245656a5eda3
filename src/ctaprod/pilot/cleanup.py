"""Worker disk hygiene: job directories go once the job's outputs are safe.

A job's outputs are safe once the wrapper is done with it: the output sandbox is uploaded,
the output data is registered or handed to a failover request, and the final status is
delivered -- or kept, with that request, in ``final_status.json`` for the pilot to deliver
later. So after the wrapper: a job directory holding an undelivered final status is pruned
to that file (:mod:`ctaprod.pilot.final_status` needs nothing else), any other is removed,
except that a job that did not end well is kept when the pilot is told to keep failed jobs
(for debugging). At its end the pilot removes the job directories left over and, if it
created its work directory, its log (once sent to the server) and the directory itself.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from pathlib import Path

from ctaprod.core.job_states import JobStatus
from ctaprod.pilot.final_status import FINAL_FILE

logger = logging.getLogger("ctaprod.pilot.cleanup")
JOB_DIR_PREFIX = "job_"
SAFE = frozenset({JobStatus.DONE, JobStatus.COMPLETED})  # outputs handed over


def _remove(path: Path) -> None:
    if not path.is_dir() or path.is_symlink():
        path.unlink(missing_ok=True)
        return
    try:
        shutil.rmtree(path)
        return
    except OSError:  # payloads leave read-only directories (caches, unpacked tarballs)
        for root, dirs, _files in os.walk(path):
            for name in dirs:
                with contextlib.suppress(OSError):
                    os.chmod(os.path.join(root, name), 0o700)
    try:
        shutil.rmtree(path)
    except OSError as exc:  # not worth failing the pilot for
        logger.warning("cannot remove %s: %s", path, exc)


def clean_job_dir(job_dir: Path, status: JobStatus | None, keep_failed: bool) -> str:
    """Remove (or prune) a job directory after its wrapper; what was done, for the log:
    "removed", "kept" or "pruned" (an undelivered final status is all that is left)."""
    if not job_dir.is_dir():
        return "removed"
    if keep_failed and status not in SAFE:
        return "kept"
    if (job_dir / FINAL_FILE).exists():
        for entry in job_dir.iterdir():
            if entry.name != FINAL_FILE:
                _remove(entry)
        return "pruned"
    _remove(job_dir)
    return "removed"


def clean_work_dir(work_dir: Path, keep_failed: bool) -> int:
    """At the pilot's end: remove the job directories that hold no undelivered final status
    (all of them unless failed ones are kept); how many were removed."""
    if keep_failed:
        return 0
    removed = 0
    for job_dir in work_dir.glob(f"{JOB_DIR_PREFIX}*"):
        if job_dir.is_dir() and not (job_dir / FINAL_FILE).exists():
            _remove(job_dir)
            removed += 1
    return removed


def remove_if_empty(directory: Path) -> bool:
    """Remove ``directory`` if nothing is left in it; whether it was removed."""
    try:
        directory.rmdir()
    except OSError:
        return False
    return True
