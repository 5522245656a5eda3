"""Where the CTA software comes from on a worker node: CVMFS, an Apptainer image or the
stand-ins (standard library only: this runs in the job's payload).

The mode is the site's choice: ``CTAPROD_CTA_SOFTWARE`` in the payload's environment (set by
the site's pilot or batch configuration) wins over the default the job carries (the
server's choice at conversion, ``--software`` of the launcher).

- ``cvmfs``: ``<root>/<package>/<version>/bin/<program>``, root from
  ``CTAPROD_CTA_CVMFS_ROOT`` (default :data:`DEFAULT_CVMFS_ROOT`), the layout CTAO sites
  install packages in (one directory per package and version).
- ``apptainer``: ``apptainer exec <image> <program>``, image from ``CTAPROD_CTA_IMAGE``
  (default :data:`DEFAULT_IMAGE`); ``{package}`` and ``{version}`` in it are filled in.
- ``standin``: ``python -m ctaprod.cta.standins <program>``, the small local programs with
  the same command lines (:mod:`ctaprod.cta.standins`).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence

__all__ = ["DEFAULT_CVMFS_ROOT", "DEFAULT_IMAGE", "MODES", "SoftwareError", "choose", "command"]

MODES = ("cvmfs", "apptainer", "standin")
DEFAULT_CVMFS_ROOT = "/cvmfs/ctao.dpps.cta-observatory.org/software"
DEFAULT_IMAGE = "docker://harbor.cta-observatory.org/dpps/{package}:{version}"


class SoftwareError(Exception):
    """The software cannot be found or chosen; the message says why."""


def choose(default: str, env: Mapping[str, str]) -> str:
    """The mode for this job: the site's (environment), else the job's default."""
    mode = (env.get("CTAPROD_CTA_SOFTWARE") or default).strip().lower()
    if mode not in MODES:
        raise SoftwareError(f"unknown CTA software mode {mode!r} (use {', '.join(MODES)})")
    return mode


def command(
    program: str,
    args: Sequence[str],
    *,
    mode: str,
    package: str,
    version: str,
    env: Mapping[str, str],
) -> list[str]:
    """The command line that runs ``program`` with ``args`` in ``mode``."""
    if "/" in program or not program:
        raise SoftwareError(f"{program!r} is not a program name")
    if mode == "standin":
        return [sys.executable, "-m", "ctaprod.cta.standins", program, *args]
    if mode == "cvmfs":
        root = (env.get("CTAPROD_CTA_CVMFS_ROOT") or DEFAULT_CVMFS_ROOT).rstrip("/")
        return [f"{root}/{package}/{version}/bin/{program}", *args]
    if mode == "apptainer":
        image = env.get("CTAPROD_CTA_IMAGE") or DEFAULT_IMAGE
        try:
            image = image.format(package=package, version=version)
        except (KeyError, IndexError, ValueError) as exc:
            raise SoftwareError(f"CTAPROD_CTA_IMAGE {image!r}: {exc}") from None
        return ["apptainer", "exec", image, program, *args]
    raise SoftwareError(f"unknown CTA software mode {mode!r} (use {', '.join(MODES)})")
