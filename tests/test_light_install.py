"""A worker node installs ctaprod without the server extras: the pilot, the job wrapper, the
client, the CLI, the domain core and the resource plugins must import without FastAPI,
SQLAlchemy, uvicorn, Alembic, Starlette, PyJWT or the database drivers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
SERVER_ONLY = (
    "fastapi",
    "sqlalchemy",
    "uvicorn",
    "alembic",
    "starlette",
    "jwt",
    "pymysql",
    "psycopg",
)
# Layers a worker node needs, every module of them (plus the modules named in the design).
LIGHT_LAYERS = ("core", "client", "resources", "pilot", "cli")
NAMED = ("ctaprod.pilot.watchdog", "ctaprod.client.http", "ctaprod.client.submit")


def light_modules() -> list[str]:
    found = set(NAMED)
    for layer in LIGHT_LAYERS:
        for path in sorted((SRC / "ctaprod" / layer).rglob("*.py")):
            parts = list(path.relative_to(SRC).with_suffix("").parts)
            if parts[-1] == "__main__":
                continue  # running it would start a pilot
            if parts[-1] == "__init__":
                parts.pop()
            found.add(".".join(parts))
    return sorted(found)


BLOCKER = textwrap.dedent(
    """
    import importlib, importlib.util, json, sys

    BLOCKED = set(sys.argv[1].split(","))

    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{name} is not installed on a worker node")
            return None

    for name in list(sys.modules):
        if name.split(".")[0] in BLOCKED:
            del sys.modules[name]
    sys.meta_path.insert(0, Blocker())

    results = {}
    for module in sys.argv[2:]:
        try:
            if importlib.util.find_spec(module) is None:
                results[module] = "missing"
                continue
            importlib.import_module(module)
            results[module] = "ok"
        except Exception as exc:
            results[module] = f"{type(exc).__name__}: {exc}"
    leaked = sorted({m.split(".")[0] for m in sys.modules} & BLOCKED)
    print(json.dumps({"results": results, "leaked": leaked}))
    """
)


def _run_blocked(blocked: tuple[str, ...], modules: list[str]) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    result = subprocess.run(
        [sys.executable, "-c", BLOCKER, ",".join(blocked), *modules],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return out


def test_worker_node_modules_import_without_server_packages() -> None:
    modules = light_modules()
    out = _run_blocked(SERVER_ONLY, modules)
    results = out["results"]
    assert isinstance(results, dict)
    failed = {m: r for m, r in results.items() if r not in ("ok", "missing")}
    assert failed == {}
    assert out["leaked"] == []
    for name in (
        "ctaprod.pilot.watchdog",
        "ctaprod.client.http",
        "ctaprod.core.jobs",
        "ctaprod.core.jdl",
        "ctaprod.resources.storage",
    ):
        assert results[name] == "ok"


def test_the_blocker_blocks() -> None:
    """The check above can fail: server modules do not import with the blocker in place."""
    out = _run_blocked(SERVER_ONLY, ["ctaprod.db.tables", "ctaprod.api.app", "json"])
    results = out["results"]
    assert isinstance(results, dict)
    assert results["json"] == "ok"
    assert "ImportError" in str(results["ctaprod.db.tables"])
    assert "ImportError" in str(results["ctaprod.api.app"])


# -- a real base install into a fresh virtual environment ----------------------------------


@pytest.fixture(scope="module")
def light_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("light")
    # Install from a copy so that the build leaves nothing in the working tree.
    project = base / "project"
    project.mkdir()
    for name in ("pyproject.toml", "README.md"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, project / name)
    shutil.copytree(
        SRC, project / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    result = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(project)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode != 0 and "Could not find a version" in result.stderr + result.stdout:
        pytest.skip(f"package index unreachable: {result.stderr[-500:]}")
    assert result.returncode == 0, result.stdout + result.stderr
    return venv


@pytest.mark.slow
def test_base_install_runs_the_pilot_and_client_only(light_venv: Path) -> None:
    python = str(light_venv / "bin" / "python")
    ok = subprocess.run(
        [python, "-c", "import ctaprod.pilot.watchdog, ctaprod.client.http"],
        capture_output=True,
        text=True,
        cwd=light_venv,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    for package in ("sqlalchemy", "fastapi", "uvicorn"):
        missing = subprocess.run(
            [python, "-c", f"import {package}"],
            capture_output=True,
            text=True,
            cwd=light_venv,
            check=False,
        )
        assert missing.returncode != 0, package
        assert "ModuleNotFoundError" in missing.stderr
    # The installed package is the copy in the venv, not the working tree.
    where = subprocess.run(
        [python, "-c", "import ctaprod; print(ctaprod.__file__)"],
        capture_output=True,
        text=True,
        cwd=light_venv,
        check=True,
    )
    assert str(light_venv) in where.stdout


@pytest.mark.slow
def test_base_install_has_a_working_cli(light_venv: Path) -> None:
    cli = light_venv / "bin" / "ctaprod"
    assert cli.exists()
    result = subprocess.run(
        [str(cli), "--help"],
        capture_output=True,
        text=True,
        cwd=light_venv,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
