"""Client-side submission: read a JDL/YAML/JSON file, upload local sandbox files, submit."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from ctaprod.client.http import Client
from ctaprod.core.archive import make_archive
from ctaprod.core.errors import InvalidInput
from ctaprod.core.jobdesc import load_document, normalize_keys
from ctaprod.core.jobs import LFN_PREFIX, SANDBOX_REF


def prepare_documents(client: Client, text: str, fmt: str, base_dir: Path) -> list[dict[str, Any]]:
    """Parse the description and replace local InputSandbox files by an uploaded archive."""
    doc = load_document(text, fmt)
    docs = doc if isinstance(doc, list) else [doc]
    out = []
    for raw in docs:
        attrs = normalize_keys(raw)
        sandbox = attrs.get("InputSandbox") or []
        if isinstance(sandbox, str):
            sandbox = [s.strip() for s in sandbox.split(",") if s.strip()]
        local = [
            s
            for s in sandbox
            if not SANDBOX_REF.match(str(s)) and not str(s).upper().startswith(LFN_PREFIX)
        ]
        if local:
            paths = []
            for name in local:
                path = (base_dir / str(name)).resolve()
                if not path.exists():
                    raise InvalidInput(f"InputSandbox file {name!r} not found in {base_dir}")
                paths.append(path)
            with tempfile.TemporaryDirectory() as tmp:
                archive = Path(tmp) / "sandbox.tar.gz"
                sha = make_archive(paths, archive)
                ref = client.upload_sandbox(archive, sha)
            attrs["InputSandbox"] = [s for s in sandbox if s not in local] + [ref]
        out.append(attrs)
    return out


def submit_file(client: Client, path: Path, fmt: str = "auto") -> list[int]:
    """Submit the job description in ``path`` (local sandbox files relative to its folder)."""
    text = path.read_text()
    docs = prepare_documents(client, text, fmt, path.parent)
    return client.submit(documents=docs)
