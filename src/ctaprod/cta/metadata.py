"""The CTA metadata schema and the shorthands of CTADIRAC production files (DESIGN.md §7).

``FIELDS`` are the catalog fields CTA productions write and query, with the types the catalog
declares them with. The shorthands are what CTADIRAC users write in ``job_config`` and
``input_meta_query`` instead of the metadata itself: ``pointing_dir`` for ``phiP``,
``zenith_angle`` for ``thetaP``, ``moon`` for ``nsb``, level names for ``data_level``.

Pointing: the metadata keeps sim_telarray's convention, the azimuth the showers travel
towards, as CTADIRAC writes it (North 180, South 0). East and West follow the same convention
(90 and 270); CTADIRAC itself writes 0 for both, which would make an East production
indistinguishable from a South one, so ctaprod deliberately differs there.

Observation data (files from a site, not simulations) carry ``night`` (the night's date as
the integer YYYYMMDD, the date of the evening the night starts: 20261201 for the night of 1
to 2 December; an integer, so ``night>=20261201`` and ranges work), ``tel_id`` (the telescope)
and ``obs_id`` (the observation, CTAO's run id) instead of ``MCCampaign``, ``particle`` and
``runNumber``: ``OBSERVATION_FIELDS``, which processing outputs inherit file by file.
"""

from __future__ import annotations

from typing import Any

from ctaprod.core.errors import InvalidInput

__all__ = [
    "DATA_LEVELS",
    "FIELDS",
    "MC_MOONS",
    "MOON_FILE_TAG",
    "MOON_NSB",
    "OBSERVATION_FIELDS",
    "POINTING_PHI",
    "data_level",
    "moon_list",
    "number",
    "pointing_dir",
]

FIELDS: dict[str, str] = {
    "MCCampaign": "string",
    "site": "string",
    "particle": "string",
    "array_layout": "string",
    "phiP": "float",
    "thetaP": "float",
    "sct": "string",
    "outputType": "string",
    "data_level": "int",
    "configuration_id": "int",
    "merged": "int",
    "runNumber": "int",
    "nsb": "int",
    "div_ang": "string",
    "split": "string",
    "tel_sim_prog": "string",
    "tel_sim_prog_version": "string",
    "airshower_sim_prog": "string",
    "airshower_sim_prog_version": "string",
    "analysis_prog": "string",
    "analysis_prog_version": "string",
    "night": "int",
    "tel_id": "int",
    "obs_id": "int",
}
# What identifies a file of observation data; each output inherits them from its input(s).
OBSERVATION_FIELDS = ("night", "tel_id", "obs_id")

POINTING_PHI = {"North": 180.0, "South": 0.0, "East": 90.0, "West": 270.0}
MOON_NSB = {"dark": 1, "half": 5, "full": 19}
# How sim_telarray names the output of each NSB level (the file name's last part).
MOON_FILE_TAG = {1: "dark", 5: "moon", 19: "fullmoon"}
DATA_LEVELS = {
    "MC0": -3, "R0": -2, "R1": -1, "DL0": 0, "DL1": 1, "DL2": 2, "DL3": 3, "DL4": 4, "DL5": 5,
}  # fmt: skip
# The moon conditions one MC run can simulate: sim_telarray adds levels, it does not skip.
MC_MOONS = (["dark"], ["dark", "half"], ["dark", "half", "full"])


def _bad(where: str, message: str) -> InvalidInput:
    """``where`` is ``<step>:<section>.<key>``: the message names both, the detail the key."""
    step, _, path = where.partition(":")
    return InvalidInput(f"step {step}: {path}: {message}", step=step, key=path.rsplit(".")[-1])


def number(value: Any, where: str) -> float:
    """A number (``20``, ``20.0``, ``"20"``), or ``InvalidInput`` naming ``where``
    (``"<step>:<key>"``)."""
    if isinstance(value, bool):
        raise _bad(where, f"{value!r} is not a number")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise _bad(where, f"{value!r} is not a number") from None


def pointing_dir(value: Any, where: str) -> str:
    """A pointing direction's canonical name (North, South, East, West; any letter case)."""
    for name in POINTING_PHI:
        if str(value).strip().lower() == name.lower():
            return name
    raise _bad(where, f"{value!r} is not a pointing direction (North, South, East, West)")


def moon_list(value: Any, where: str) -> list[str]:
    """Moon conditions from ``dark``, ``"dark, half"`` or a YAML list, each checked."""
    items = value if isinstance(value, list) else str(value).split(",")
    moons = [str(m).strip().lower() for m in items if str(m).strip()]
    unknown = [m for m in moons if m not in MOON_NSB]
    if not moons or unknown:
        raise _bad(
            where,
            f"{value!r} is not a moon condition: use dark, half or full (MC: 'dark', "
            "'dark, half' or 'dark, half, full')",
        )
    return moons


def data_level(value: Any, where: str) -> int:
    """A data level as a number (-3..5) or a name (MC0, R0, R1, DL0..DL5)."""
    if isinstance(value, str) and value.strip().upper() in DATA_LEVELS:
        return DATA_LEVELS[value.strip().upper()]
    if isinstance(value, int) and not isinstance(value, bool) and -3 <= value <= 5:
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return data_level(int(value), where)
    raise _bad(where, f"{value!r} is not a data level (-3..5 or {', '.join(DATA_LEVELS)})")
