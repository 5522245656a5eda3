"""Client-side submission: read a JDL/YAML/JSON file, upload local sandbox files, submit.

InputSandbox entries may hold DIRAC's placeholders (``%s``, ``%n``, ``%(X)s``): such an
entry is a file only once the description is expanded. When the expanded entries are all
``LFN:`` or ``SB:`` references the description goes to the server as written (it expands
them); when some are local files, the description is expanded here, one archive holds every
local file any of its jobs names, and each job goes with that archive in its InputSandbox.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ctaprod.client.http import Client
from ctaprod.core.archive import make_archive
from ctaprod.core.errors import InvalidInput
from ctaprod.core.jobdesc import SubmissionLimits, expand, load_document, normalize_keys
from ctaprod.core.jobs import LFN_PREFIX, SANDBOX_REF

_PLACEHOLDER = re.compile(r"%(?:s|n|\([^)]*\)s)")


def _as_list(sandbox: Any) -> list[Any]:
    if not sandbox:
        return []
    if isinstance(sandbox, str):
        return [s.strip() for s in sandbox.split(",") if s.strip()]
    return list(sandbox) if isinstance(sandbox, list) else [sandbox]


def _is_local(entry: object) -> bool:
    text = str(entry)
    return not SANDBOX_REF.match(text) and not text.upper().startswith(LFN_PREFIX)


def _upload(client: Client, names: Sequence[str], base_dir: Path) -> str:
    """One archive of the local files ``names`` (relative to ``base_dir``); its SB: ref."""
    paths = []
    for name in names:
        path = (base_dir / name).resolve()
        if not path.exists():
            raise InvalidInput(f"InputSandbox file {name!r} not found in {base_dir}")
        paths.append(path)
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "sandbox.tar.gz"
        sha = make_archive(paths, archive)
        return client.upload_sandbox(archive, sha)


def _expanded(client: Client, attrs: dict[str, Any], base_dir: Path) -> list[dict[str, Any]]:
    """The jobs of a description whose InputSandbox placeholders name local files, each
    with one shared archive of those files in place of its local entries."""
    jobs = expand(attrs, SubmissionLimits())
    local = sorted({e for job in jobs for e in job.input_sandbox if _is_local(e)})
    if not local:
        return [attrs]  # only LFN:/SB: entries: the server expands them
    ref = _upload(client, local, base_dir)
    out = []
    for job in jobs:
        doc = job.model_dump(mode="json", by_alias=True, exclude_defaults=True)
        doc["InputSandbox"] = [e for e in job.input_sandbox if not _is_local(e)] + [ref]
        out.append(doc)
    return out


def prepare_documents(client: Client, text: str, fmt: str, base_dir: Path) -> list[dict[str, Any]]:
    """Parse the description and replace local InputSandbox files by an uploaded archive."""
    doc = load_document(text, fmt)
    docs = doc if isinstance(doc, list) else [doc]
    out = []
    for raw in docs:
        attrs = normalize_keys(raw)
        sandbox = _as_list(attrs.get("InputSandbox"))
        if any(_PLACEHOLDER.search(str(s)) for s in sandbox):
            out.extend(_expanded(client, attrs, base_dir))
            continue
        local = [str(s) for s in sandbox if _is_local(s)]
        if local:
            ref = _upload(client, local, base_dir)
            attrs["InputSandbox"] = [s for s in sandbox if not _is_local(s)] + [ref]
        out.append(attrs)
    return out


def submit_file(client: Client, path: Path, fmt: str = "auto") -> list[int]:
    """Submit the job description in ``path`` (local sandbox files relative to its folder)."""
    text = path.read_text()
    docs = prepare_documents(client, text, fmt, path.parent)
    return client.submit(documents=docs)
