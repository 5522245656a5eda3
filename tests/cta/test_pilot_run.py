"""A CTA MC task run by the real job wrapper against a real server and POSIX storage: the
launcher and the stand-in write the outputs the job declares, and each is registered with the
task's metadata and its own (the NSB of each sim_telarray output, Log for the logs)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ctaprod.client.http import Client
from ctaprod.core.job_states import JobStatus
from ctaprod.core.matching import Resource
from ctaprod.core.settings import Settings
from ctaprod.core.transformations import render_task_job
from ctaprod.cta import plugin, workflow
from ctaprod.cta.settings import CtaSettings
from ctaprod.logic import metadata
from ctaprod.pilot.config import RetryPolicy, WrapperOptions
from ctaprod.pilot.wrapper import run_job
from tests.cta.conftest import LIMITS, checked, options
from tests.dm_helpers import data_settings

pytestmark = pytest.mark.timeout(120)
FAST = RetryPolicy(max_seconds=1, initial=0.1, max_delay=0.2)
OPTS = WrapperOptions(heartbeat_interval=0.5, poll_interval=0.1, kill_grace=1.0, retry=FAST)
MC = {
    "ProdSteps": [
        {
            "ID": 1,
            "job_config": {
                "type": "MCSimulation",
                "version": "2024-02-05",
                "site": "LaPalma",
                "particle": "gamma",
                "pointing_dir": "North",
                "zenith_angle": 20,
                "n_shower": 10,
                "moon": "dark, half",
                "start_run_number": 0,
            },
        }
    ],
    "Common": {"MCCampaign": "Prod6Test", "configuration_id": 16, "base_path": "/ctao/MC/test"},
}


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return data_settings(db_url, tmp_path).model_copy(update={"extensions": ["cta"]})


def test_mc_task_outputs_registered_with_their_own_metadata(
    live_server: Any, tmp_path: Path
) -> None:
    ctx = live_server.services.ctx
    declared = {f.name for f in metadata.list_fields(ctx)}  # the server declares the extension's
    assert set(plugin.install()) <= declared
    runnable = CtaSettings(software="standin", python=sys.executable)
    definition = workflow.convert(MC, options(), settings=runnable)
    spec = checked(definition)["1"]
    job = render_task_job(
        spec, transformation_id=3, task_id=1, input_lfns=[], run_number=5, limits=LIMITS
    )
    document = {**job.to_jdl_dict(), "OutputSE": ["SE-A"], "CPUTime": 600}
    with Client(live_server.url, live_server.admin_token, timeout=10) as admin:
        (job_id,) = admin.submit(documents=[document])
        live_server.services.matcher.invalidate()
        with Client(live_server.url, live_server.pilot_token, timeout=10) as pilot:
            reg = pilot.register_pilot(f"cta{time.monotonic_ns()}", "A")
        with Client(live_server.url, reg.session_token, timeout=10) as session:
            match = session.match(reg.pilot_id, Resource(site="A", cpu_time_left=200000))
        assert match is not None
        assert match.job_id == job_id
        outcome = run_job(
            lambda token: Client(live_server.url, token, timeout=5), match, tmp_path, OPTS
        )
        assert (outcome.status, outcome.minor_status) == (JobStatus.DONE, "Execution Complete")
    lfns = [o.removeprefix("LFN:") for o in job.output_data]
    own = {lfn: metadata.get_metadata(ctx, lfn).own for lfn in lfns}
    assert [(m["nsb"], m["outputType"]) for m in own.values()] == [
        (1, "Data"),
        (1, "Log"),
        (5, "Data"),
        (5, "Log"),
    ]
    assert {m["runNumber"] for m in own.values()} == {5}
    assert {m["tel_sim_prog"] for m in own.values()} == {"sim_telarray"}
    stored = tmp_path / "se" / "SE-A" / lfns[0].lstrip("/")
    assert stored.stat().st_size == 4096
