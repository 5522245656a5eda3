"""The code layers point one way (DESIGN.md section 2).

Two independent checks: import-linter with the contracts of pyproject.toml, and an AST walk
over src/ctaprod with the table below, so that editing the linter configuration does not
silence a forbidden import.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = "ctaprod"

LAYERS = (
    "core",
    "db",
    "logic",
    "api",
    "agents",
    "resources",
    "client",
    "cli",
    "pilot",
    "server",
    "cta",
)

# What each layer must never import, directly or through other ctaprod modules
# (the same table as [tool.importlinter] in pyproject.toml).
FORBIDDEN: dict[str, frozenset[str]] = {
    "core": frozenset(
        {
            "db",
            "logic",
            "api",
            "agents",
            "resources",
            "client",
            "cli",
            "pilot",
            "server",
            "cta",
            "sqlalchemy",
            "fastapi",
            "httpx",
        }
    ),
    "db": frozenset(
        {
            "logic",
            "api",
            "agents",
            "resources",
            "client",
            "cli",
            "pilot",
            "server",
            "cta",
            "fastapi",
        }
    ),
    "logic": frozenset(
        {
            "api",
            "agents",
            "client",
            "cli",
            "pilot",
            "server",
            "cta",
            "fastapi",
            "starlette",
            "httpx",
        }
    ),
    "api": frozenset({"agents", "client", "cli", "pilot", "server", "cta"}),
    "agents": frozenset({"api", "client", "cli", "pilot", "server", "cta", "fastapi"}),
    "resources": frozenset(
        {
            "db",
            "logic",
            "api",
            "agents",
            "client",
            "cli",
            "pilot",
            "server",
            "cta",
            "sqlalchemy",
            "fastapi",
        }
    ),
    "client": frozenset(
        {
            "db",
            "logic",
            "api",
            "agents",
            "resources",
            "cli",
            "pilot",
            "server",
            "cta",
            "sqlalchemy",
            "fastapi",
        }
    ),
    "pilot": frozenset(
        {
            "db",
            "logic",
            "api",
            "agents",
            "cli",
            "server",
            "cta",
            "sqlalchemy",
            "fastapi",
            "uvicorn",
            "alembic",
        }
    ),
    "cli": frozenset({"db", "logic", "api", "agents"}),
}
# Layers whose rule covers only their own import statements, not what those modules import.
DIRECT_ONLY = frozenset({"cli"})
# The server may be imported by the CLI, but only inside functions (loaded lazily, so that a
# worker-node install without the server extras can still run the CLI).
LAZY_ONLY: dict[str, frozenset[str]] = {"cli": frozenset({"server"})}


@dataclass(frozen=True)
class Import:
    target: str  # a dotted module name (for ``from a import b``: a.b when that is a module)
    line: int
    lazy: bool  # inside a function body


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((SRC / PACKAGE).rglob("*.py"))}


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if parts[0] == PACKAGE and len(parts) > 1 else "<root>"


def _walk(node: ast.AST, lazy: bool = False) -> Iterator[tuple[ast.AST, bool]]:
    for child in ast.iter_child_nodes(node):
        inner = lazy or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        yield child, inner
        yield from _walk(child, inner)


@cache
def imports_of(module: str) -> tuple[Import, ...]:
    path = modules()[module]
    is_package = path.name == "__init__.py"
    out: list[Import] = []
    for node, lazy in _walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [Import(alias.name, node.lineno, lazy) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                base = package[: len(package) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            out.append(Import(source, node.lineno, lazy))
            for alias in node.names:
                if f"{source}.{alias.name}" in modules():
                    out.append(Import(f"{source}.{alias.name}", node.lineno, lazy))
    return tuple(out)


def _name_of(target: str) -> str:
    """What the tables call an import: a ctaprod layer or a top-level external package."""
    parts = target.split(".")
    return layer_of(target) if parts[0] == PACKAGE else parts[0]


def reachable(module: str) -> set[str]:
    """ctaprod modules imported by ``module``, directly or through other ctaprod modules."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        current = todo.pop()
        for imp in imports_of(current):
            if imp.target in modules() and imp.target not in seen:
                seen.add(imp.target)
                todo.append(imp.target)
    return seen


def violations() -> list[str]:
    found: list[str] = []
    for module in modules():
        layer = layer_of(module)
        forbidden = FORBIDDEN.get(layer, frozenset())
        for imp in imports_of(module):
            name = _name_of(imp.target)
            if name == layer:
                continue
            if name in forbidden:
                found.append(f"{module}:{imp.line} imports {imp.target} ({layer} -> {name})")
            if name in LAZY_ONLY.get(layer, frozenset()) and not imp.lazy:
                found.append(
                    f"{module}:{imp.line} imports {imp.target} at module level "
                    f"({layer} may import {name} only inside functions)"
                )
        if layer in DIRECT_ONLY or not forbidden:
            continue
        for via in sorted(reachable(module)):
            for imp in imports_of(via):
                name = _name_of(imp.target)
                if name in forbidden and layer_of(via) != layer:
                    found.append(
                        f"{module} reaches {imp.target} through {via}:{imp.line} "
                        f"({layer} -> {name})"
                    )
    return sorted(set(found))


def test_every_module_sits_in_a_known_layer() -> None:
    unknown = {layer_of(m) for m in modules()} - set(LAYERS) - {"<root>"}
    assert unknown == set()
    assert {"ctaprod.core.jobs", "ctaprod.db.jobs", "ctaprod.logic.jobs"} <= set(modules())


def test_generic_code_never_imports_the_cta_extension() -> None:
    for layer, forbidden in FORBIDDEN.items():
        if layer != "cli":
            assert "cta" in forbidden, layer


def test_layers_point_one_way() -> None:
    assert violations() == []


def test_the_check_sees_forbidden_imports(monkeypatch: pytest.MonkeyPatch) -> None:
    """The AST check is not vacuous: a planted back-import (even a lazy one) is reported."""
    planted = {
        "ctaprod.core.jobs": (Import("ctaprod.db.tables", 1, True),),
        "ctaprod.client.http": (Import("sqlalchemy.orm", 2, False),),
        "ctaprod.cli.main": (Import("ctaprod.server.services", 3, False),),
    }
    original = imports_of.__wrapped__

    @cache  # the reachability walk asks for each module many times
    def fake(module: str) -> tuple[Import, ...]:
        return original(module) + planted.get(module, ())

    monkeypatch.setattr(sys.modules[__name__], "imports_of", fake)
    found_list = violations()
    found = "\n".join(found_list)
    assert "ctaprod.core.jobs:1 imports ctaprod.db.tables (core -> db)" in found
    assert "ctaprod.client.http:2 imports sqlalchemy.orm (client -> sqlalchemy)" in found
    if "ctaprod.cli.main" in modules():
        assert "ctaprod.cli.main:3 imports ctaprod.server.services at module level" in found
    # Indirect: the pilot uses the client, so a client import of sqlalchemy reaches it.
    assert any(
        v.startswith("ctaprod.pilot.") and "through ctaprod.client.http" in v for v in found_list
    )


# What routers may not touch: the database (DB classes and SQLAlchemy), directly or through the
# handles of the logic Context; they validate, authorize, call one logic function, map errors.
ROUTERS = f"{PACKAGE}.api.routers"
DB_HANDLES = frozenset(
    {"db", "jobs", "queues", "pilots", "sandboxes", "auth", "sites", "catalog", "meta"}
    | {"datasets", "se_status", "requests"}
)


def router_violations() -> list[str]:
    found: list[str] = []
    for module, path in modules().items():
        if not module.startswith(ROUTERS + "."):
            continue
        for imp in imports_of(module):
            if _name_of(imp.target) in {"db", "sqlalchemy"}:
                found.append(f"{module}:{imp.line} imports {imp.target}")
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Attribute)
                and node.value.attr == "ctx"
                and node.attr in DB_HANDLES
            ):
                found.append(f"{module}:{node.lineno} uses ctx.{node.attr}")
    return found


def test_routers_do_not_read_the_database() -> None:
    assert router_violations() == []


def test_the_router_check_sees_database_use(monkeypatch: pytest.MonkeyPatch) -> None:
    planted = {f"{ROUTERS}.jobs": (Import("ctaprod.db.jobs", 7, False),)}
    original = imports_of.__wrapped__

    def fake(module: str) -> tuple[Import, ...]:
        return original(module) + planted.get(module, ())

    monkeypatch.setattr(sys.modules[__name__], "imports_of", fake)
    assert f"{ROUTERS}.jobs:7 imports ctaprod.db.jobs" in router_violations()


def test_relative_imports_are_resolved() -> None:
    targets = {i.target for m in modules() for i in imports_of(m)}
    assert not any(t.startswith(".") for t in targets)


def test_import_linter_contracts_are_kept() -> None:
    exe = Path(sys.executable).with_name("lint-imports")
    command = [str(exe)] if exe.exists() else [shutil.which("lint-imports") or "lint-imports"]
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "broken" in result.stdout
    assert " 0 broken" in result.stdout
