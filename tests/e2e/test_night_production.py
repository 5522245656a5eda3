"""Observation data end to end (issue 9 part 5): the DL0 files of two nights at La Palma are
registered one by one as a site sends them (`ctaprod dm put` with night, telescope and
observation metadata), processed DL0 -> DL1 -> DL2 as they arrive by the CTADIRAC production
of docs/examples/night_dl0_to_dl2.yml, and merged per night once the operator declares the
nights complete (`ctaprod prod flush`). `ctaprod up` is a real process, the pilots are real,
the payloads are the CTA stand-ins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.e2e.test_data_e2e import cli
from tests.e2e.test_embedded import embedded  # noqa: F401  (the `ctaprod up` fixture)

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "examples" / "night_dl0_to_dl2.yml"
RAW = "/ctao/raw/LaPalma"
NIGHTS = {20261201: [(1, 101), (2, 101), (1, 102), (2, 102), (1, 103), (2, 103)]}
NIGHTS[20261202] = [(1, 201), (2, 201)]
ARRIVALS = [(night, tel, obs) for night, files in NIGHTS.items() for tel, obs in files]


def dl0_lfn(night: int, tel: int, obs: int) -> str:
    return f"{RAW}/{night}/DL0/LaPalma_{night}_obs{obs:06d}_tel{tel:03d}.DL0.zst"


@pytest.fixture
def up(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> SimpleNamespace:
    for agent in ("TASK_CREATION", "TASK_SUBMISSION", "TRANSFORMATION_RECOVERY", "PRODUCTION"):
        monkeypatch.setenv(f"CTAPROD_AGENTS__{agent}__INTERVAL", "1")
    env: SimpleNamespace = request.getfixturevalue("embedded")
    return env


def test_a_night_is_processed_as_it_arrives_and_merged_when_complete(
    up: SimpleNamespace, tmp_path: Path
) -> None:
    ctaprod, client = cli(tmp_path), up.client
    ctaprod("prod", "submit", str(EXAMPLE), "--name", "night")
    ctaprod("prod", "start", "night")
    dl1_step, dl2_step, merge_step = client.production("night").steps
    deadline = time.monotonic() + 120

    def outputs(query: str) -> list[str]:
        return sorted(ctaprod("dm", "find", query).split())

    attach_delays = []
    for index, (night, tel, obs) in enumerate(ARRIVALS):
        if index == len(ARRIVALS) - 1:
            # Before the last file arrives, the first ones went all the way to DL2.
            while not outputs("data_level=2 merged=0"):
                assert time.monotonic() < deadline, up.log.read_text()[-4000:]
                time.sleep(0.5)
            assert outputs("data_level=1")
        local = tmp_path / f"{night}_{tel}_{obs}.zst"
        local.write_bytes(f"DL0 night {night} tel {tel} obs {obs}\n".encode() * 200)
        meta = ["site=LaPalma", "outputType=Data", "data_level=0", f"night={night}"]
        meta += [f"tel_id={tel}", f"obs_id={obs}"]
        ctaprod("dm", "put", str(local), dl0_lfn(night, tel, obs), *(f"-m{m}" for m in meta))
        registered = time.monotonic()
        while sum(client.production("night").steps[0].files.values()) < index + 1:
            assert time.monotonic() < registered + 10, "file not attached"
            time.sleep(0.1)
        attach_delays.append(time.monotonic() - registered)
        time.sleep(0.5)
    # Event-driven: each file is attached about a second after it is registered (the
    # polling above and a loaded 2-core machine included).
    assert sorted(attach_delays)[len(attach_delays) // 2] < 2.5, attach_delays

    ctaprod("prod", "flush", "night")  # the nights are complete: no more DL0 will come
    while (view := client.production("night")).status != "Completed":
        assert time.monotonic() < deadline, (view, up.log.read_text()[-4000:])
        time.sleep(1)
    assert [s.tasks for s in view.steps] == [{"Done": 8}, {"Done": 8}, {"Done": 2}]

    # Every DL1 and DL2 file carries the night, telescope and observation of its DL0 file.
    for level, step in ((1, dl1_step), (2, dl2_step)):
        made = outputs(f"data_level={level} prod_step_id={step.trans_id}")
        assert len(made) == len(ARRIVALS)
        carried = {
            (own["night"], own["tel_id"], own["obs_id"])
            for own in (client.get_meta(lfn).own for lfn in made)
        }
        assert carried == set(ARRIVALS)

    # One merged file per night, made of that night's DL2 files only.
    merged = outputs(f"prod_step_id={merge_step.trans_id}")
    assert len(merged) == 2
    by_night = {}
    for lfn in merged:
        own = client.get_meta(lfn).own
        assert (own["merged"], own["data_level"], own["site"]) == (1, 2, "LaPalma")
        by_night[own["night"]] = lfn
        # What all its inputs share: two telescopes each night, three observations on the
        # first, one on the second.
        assert "tel_id" not in own
        assert own.get("obs_id") == (201 if own["night"] == 20261202 else None)
        assert lfn.startswith(f"/ctao/data/LaPalma/mixed/ctapipe-merge/{merge_step.trans_id}/")
    assert sorted(by_night) == sorted(NIGHTS)
    for night, lfn in by_night.items():
        parents = client.ancestors(lfn)
        assert len(parents) == len(NIGHTS[night])
        for parent in parents:
            assert client.get_meta(parent.lfn).own["night"] == night
        dl0 = {r.lfn for r in client.ancestors(lfn, depth=3) if r.depth == 3}
        assert dl0 == {dl0_lfn(night, tel, obs) for tel, obs in NIGHTS[night]}

    report = tmp_path / "report.json"
    command = ["prod", "validate", "night", "--checksum", "full", "--report", str(report)]
    validate = subprocess.run(
        [sys.executable, "-m", "ctaprod.cli.main", *command],
        env=dict(os.environ, CTAPROD_CONFIG_DIR=str(tmp_path / "client"), COLUMNS="200"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert validate.returncode == 0, validate.stdout + validate.stderr
    steps = json.loads(report.read_text())["steps"]
    assert [(s["expected_outputs"], s["produced_outputs"]) for s in steps] == [
        (8, 8), (8, 8), (2, 2),
    ]  # fmt: skip
    assert "Valid" in ctaprod("prod", "show", "night")
