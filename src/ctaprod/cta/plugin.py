"""The CTA extension's entry point (group ``ctaprod.extensions``, name ``cta``).

:func:`install` plugs the extension into the generic core: the transformation types the CTA
job types become, the CTADIRAC production format, and the metadata fields CTA productions
write (returned for the server to declare the missing ones). The server calls it once at
startup; calling it again changes nothing.
"""

from __future__ import annotations

from ctaprod.core.productions import FORMATS, ProductionFormat
from ctaprod.core.trans_types import TYPES, TaskKind, TransformationType, TypeRegistry
from ctaprod.cta import workflow
from ctaprod.cta.metadata import FIELDS

__all__ = ["CTA_TYPES", "FORMAT_NAME", "install", "register_types"]

FORMAT_NAME = "ctadirac"
_GROUPED = frozenset({"Standard", "BySize", "ByMetadata"})
# DIRAC's names for what CTADIRAC's job types become (besides MCSimulation and Merging,
# built in): each reads input files and runs jobs, grouped as Processing is.
CTA_TYPES = tuple(
    TransformationType(name, True, TaskKind.JOB, _GROUPED, "Standard")
    for name in ("DataReprocessing", "Training", "ApplyModel")
)


def register_types(types: TypeRegistry = TYPES) -> None:
    """Add the CTA transformation types to ``types`` (those it has already are kept)."""
    for ttype in CTA_TYPES:
        if ttype.name not in types:
            types.register(ttype)


def _register_format() -> None:
    if FORMAT_NAME not in FORMATS.formats:
        FORMATS.register(ProductionFormat(FORMAT_NAME, workflow.detect, workflow.convert))


def install() -> dict[str, str]:
    """Register the CTA types and the CTADIRAC format; the CTA metadata fields to declare
    (name -> type name, as ``FieldDeclaration`` takes them)."""
    register_types()
    _register_format()
    return dict(FIELDS)
