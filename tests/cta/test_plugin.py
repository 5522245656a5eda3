"""The extension's entry point: types registered once, fields declarable, format registered
where the productions module offers a registry."""

from __future__ import annotations

from importlib.metadata import entry_points

from ctaprod.core.metadata import FieldDeclaration
from ctaprod.core.productions import FORMATS
from ctaprod.core.trans_types import TYPES, TypeRegistry
from ctaprod.cta import plugin, workflow


def test_install_is_idempotent_and_returns_declarable_fields() -> None:
    first = plugin.install()
    assert plugin.install() == first
    for name in ("DataReprocessing", "Training", "ApplyModel", "MCSimulation", "Merging"):
        assert name in TYPES
    assert TYPES.get("datareprocessing").default_plugin == "Standard"
    for name, type_name in first.items():
        FieldDeclaration(name=name, type=type_name)
    assert {"MCCampaign", "nsb", "phiP", "runNumber", "tel_sim_prog"} <= set(first)


def test_types_into_another_registry() -> None:
    registry = TypeRegistry()
    plugin.register_types(registry)
    plugin.register_types(registry)
    assert registry.names() == ["ApplyModel", "DataReprocessing", "Training"]


def test_entry_point_is_declared() -> None:
    (entry,) = [e for e in entry_points(group="ctaprod.extensions") if e.name == "cta"]
    assert entry.load() is plugin.install


def test_install_registers_the_ctadirac_format_once() -> None:
    plugin.install()
    plugin.install()
    fmt = FORMATS.formats["ctadirac"]
    assert (fmt.detect, fmt.convert) == (workflow.detect, workflow.convert)
    assert FORMATS.detect({"ProdSteps": [], "Common": {}}) is fmt
    assert FORMATS.detect({"name": "p", "steps": []}).name == "generic"
