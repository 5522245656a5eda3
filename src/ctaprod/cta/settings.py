"""Server-side settings of the CTA extension, read when a production file is converted.

The job templates carry the software mode as the job's default; a site overrides it in the
payload's environment (see :mod:`ctaprod.cta.software`). The default, ``standin``, lets tests
and the demo run anywhere without CTA software.
"""

from __future__ import annotations

import sys
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["CtaSettings", "SoftwareMode"]

SoftwareMode = Literal["cvmfs", "apptainer", "standin"]


class CtaSettings(BaseSettings):
    """``CTAPROD_CTA_*`` environment variables of the server."""

    model_config = SettingsConfigDict(env_prefix="CTAPROD_CTA_", extra="ignore")

    software: SoftwareMode = Field(
        "standin", description="The jobs' default software mode (a site may override it)"
    )
    python: str = Field(
        sys.executable,
        description="The Python interpreter that runs the launcher on worker nodes (default: "
        "the server's, as the pilots it starts use)",
    )
    cpu_time: int = Field(86400, ge=1, description="CPUTime of a job whose step gives none")
