"""Where the client finds the server and its token: environment, then the user config dir.

``CTAPROD_URL`` / ``CTAPROD_TOKEN`` win; otherwise ``$XDG_CONFIG_HOME/ctaprod/client.json``
holds the URL and ``token`` (mode 0600) the bearer token.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_URL = "http://127.0.0.1:8722"


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(os.environ.get("CTAPROD_CONFIG_DIR") or Path(base) / "ctaprod")


@dataclass(frozen=True)
class ClientConfig:
    url: str
    token: str | None

    @classmethod
    def load(cls) -> ClientConfig:
        d = config_dir()
        url = os.environ.get("CTAPROD_URL")
        if not url and (d / "client.json").is_file():
            url = json.loads((d / "client.json").read_text()).get("url")
        token = os.environ.get("CTAPROD_TOKEN")
        if not token and (d / "token").is_file():
            token = (d / "token").read_text().strip() or None
        return cls(url=(url or DEFAULT_URL).rstrip("/"), token=token)


def save(url: str, token: str | None) -> Path:
    """Store the URL and (0600) token for later client calls; returns the directory."""
    d = config_dir()
    d.mkdir(parents=True, exist_ok=True)
    (d / "client.json").write_text(json.dumps({"url": url}) + "\n")
    if token is not None:
        path = d / "token"
        tmp = d / "token.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(token + "\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    return d
