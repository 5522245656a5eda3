"""Helpers of the CTA extension's tests: the fixtures' production files, the CTA fields as the
catalog would declare them, and a generic production's steps checked as transformations."""

from __future__ import annotations

import ast
import types
from pathlib import Path
from typing import Any

import yaml

from ctaprod.core.jobdesc import SubmissionLimits
from ctaprod.core.metaquery import MetaSchema
from ctaprod.core.transformations import TransformationSpec, check_definition
from ctaprod.cta import plugin, workflow
from ctaprod.cta.settings import CtaSettings
from tests.fixtures import fixture_dir

WORKFLOWS = sorted((fixture_dir("ctadirac") / "workflows").glob("*.yml"))
DATASETS = {
    p.stem: ast.literal_eval(p.read_text())
    for p in (fixture_dir("ctadirac") / "datasets").glob("*.json")
}
# The production system declares prod_step_id (the link of a child to its parents).
SCHEMA = MetaSchema({**plugin.install(), "prod_step_id": "int"})
# prod5_paranal_alpha_az000_merge.yml merges up to 10,000 files in one job (CTADIRAC's
# "merge everything"): the server allows that many InputData files (its default, 10,000).
LIMITS = SubmissionLimits(max_input_data=10_000)
SETTINGS = CtaSettings(software="standin", python="/usr/bin/python3")


def options(name: str = "prod", mc_tasks: int | None = None, **extra: Any) -> Any:
    return types.SimpleNamespace(name=name, mc_tasks=mc_tasks, **extra)


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def convert(raw: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    return workflow.convert(raw, options(**kwargs), settings=SETTINGS)


def checked(definition: dict[str, Any]) -> dict[str, TransformationSpec]:
    """Each step's transformation checked as the production system creates it: named
    ``<production>.<id>``, its query = the link to its parents (prod_step_id) and its own."""
    specs = {}
    for step in definition["steps"]:
        raw = dict(step["transformation"], name=f"{definition['name']}.{step['id']}")
        query = " ".join(
            q
            for q in (
                "prod_step_id=1" if step["parents"] or step["dataset"] else "",
                step["input_query"] or "",
            )
            if q
        )
        if query:
            raw["input_query"] = query
        specs[step["id"]] = check_definition(
            raw, fields=SCHEMA, bases=[definition["base_path"]], limits=LIMITS
        )
    return specs
