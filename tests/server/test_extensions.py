"""Extensions: every entry point of ``ctaprod.extensions`` is called once per process and the
metadata fields it returns are declared when missing, with the production system's own
``prod_step_id``; the services the server, agents and tests build have them."""

from __future__ import annotations

from typing import Any

import pytest

from ctaprod.core.metaquery import FieldType
from ctaprod.server import extensions as X


class FakeEntryPoint:
    def __init__(self, name: str, fields: dict[str, str], calls: list[str]) -> None:
        self.name, self.fields, self.calls = name, fields, calls

    def load(self) -> Any:
        def install() -> dict[str, str]:
            self.calls.append(self.name)
            return self.fields

        return install


def test_the_services_have_the_production_field(services: Any) -> None:
    with services.ctx.db.read() as conn:
        assert services.ctx.meta.field_types(conn)["prod_step_id"] is FieldType.INT


def test_extensions_are_loaded_once_and_their_fields_declared(
    services: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    eps = [
        FakeEntryPoint("b", {"colour": "string", "Prod_Step_Id": "int"}, calls),
        FakeEntryPoint("a", {"weight": "float"}, calls),
    ]
    monkeypatch.setattr(X, "entry_points", lambda group: eps if group == X.GROUP else [])
    monkeypatch.setattr(services.ctx.settings, "extensions", None)  # every one installed
    X.load_extensions.cache_clear()
    try:
        assert X.install(services.ctx) == [
            "weight",
            "colour",
        ]  # in extension order; prod_step_id is there already
        assert X.install(services.ctx) == []
        assert calls == ["a", "b"]  # once per process, in name order
    finally:
        X.load_extensions.cache_clear()
    with services.ctx.db.read() as conn:
        types = services.ctx.meta.field_types(conn)
    assert (types["colour"], types["weight"]) == (FieldType.STRING, FieldType.FLOAT)


def test_only_the_extensions_asked_for_are_loaded(
    services: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    eps = [FakeEntryPoint("a", {"colour": "string"}, calls), FakeEntryPoint("b", {}, calls)]
    monkeypatch.setattr(X, "entry_points", lambda group: eps if group == X.GROUP else [])
    X.load_extensions.cache_clear()
    try:
        monkeypatch.setattr(services.ctx.settings, "extensions", ["b"])
        assert X.install(services.ctx) == []
        assert calls == ["b"]
        monkeypatch.setattr(services.ctx.settings, "extensions", ["c"])
        with pytest.raises(ValueError, match="c not installed"):
            X.install(services.ctx)
    finally:
        X.load_extensions.cache_clear()
