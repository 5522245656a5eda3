"""The launcher and the stand-ins as real processes: the outputs they promise, failures on
demand, identical bytes on a rerun, missing inputs, and the CVMFS and Apptainer modes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(60)
PY = sys.executable


def run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {
        k: v for k, v in os.environ.items() if not k.startswith(("CTAPROD_CTA", "CTAPROD_ST"))
    }
    return subprocess.run(
        args, cwd=cwd, env={**full_env, **env}, capture_output=True, text=True, timeout=50
    )


def standin(program: str, *args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return run([PY, "-m", "ctaprod.cta.standins", program, *args], cwd, **env)


def launch(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return run(
        [PY, "-m", "ctaprod.cta.run", "--package", "ctapipe", "--version", "v1", *args], cwd, **env
    )


MC_ARGS = ["--start_run", "0", "--run-number", "12", "--with-full-moon", "LaPalma", "gamma"]
MC_ARGS += ["North", "20"]


def test_mc_writes_one_output_and_log_per_moon(tmp_path: Path) -> None:
    done = standin("dirac_prod_run", *MC_ARGS, cwd=tmp_path, NSHOW="10")
    assert done.returncode == 0, done.stderr
    names = sorted(p.name for p in (tmp_path / "Data").iterdir())
    stem = "gamma_20deg_180deg_run000012___cta-prod6-lapalma"
    assert names == sorted(
        f"{stem}-{moon}.{ext}"
        for moon in ("dark", "moon", "fullmoon")
        for ext in ("simtel.zst", "log_hist.tar")
    )
    sizes = {(tmp_path / "Data" / n).stat().st_size for n in names if n.endswith(".zst")}
    assert sizes == {4096}
    missing = standin("dirac_prod_run", *MC_ARGS, cwd=tmp_path)
    assert missing.returncode == 2
    assert "NSHOW" in missing.stderr


def test_outputs_are_deterministic_and_sized_by_the_environment(tmp_path: Path) -> None:
    first, second = tmp_path / "1", tmp_path / "2"
    for where in (first, second):
        where.mkdir()
        (where / "in.simtel.zst").write_bytes(b"events")
        done = standin(
            "ctapipe-process",
            "--input",
            "in.simtel.zst",
            "--output",
            "out.h5",
            "-c",
            "a.yml",
            cwd=where,
            CTAPROD_STANDIN_BYTES="10000",
        )
        assert done.returncode == 0, done.stderr
    assert (first / "out.h5").read_bytes() == (second / "out.h5").read_bytes()
    assert (first / "out.h5").stat().st_size == 10000
    (second / "in.simtel.zst").write_bytes(b"other events")
    standin(
        "ctapipe-process",
        "--input",
        "in.simtel.zst",
        "--output",
        "out.h5",
        "-c",
        "a.yml",
        cwd=second,
        CTAPROD_STANDIN_BYTES="10000",
    )
    assert (first / "out.h5").read_bytes() != (second / "out.h5").read_bytes()


def test_failure_rate_one_always_fails_without_outputs(tmp_path: Path) -> None:
    (tmp_path / "a.h5").write_bytes(b"a")
    for _ in range(3):
        done = standin(
            "ctapipe-merge",
            "--output",
            "m.h5",
            "a.h5",
            cwd=tmp_path,
            CTAPROD_STANDIN_FAILURE_RATE="1.0",
        )
        assert done.returncode == 1
        assert "simulated failure" in done.stderr
        assert not (tmp_path / "m.h5").exists()
    assert standin("ctapipe-merge", "--output", "m.h5", "a.h5", cwd=tmp_path).returncode == 0


def test_duration_is_configurable(tmp_path: Path) -> None:
    import time

    (tmp_path / "a.h5").write_bytes(b"a")
    start = time.monotonic()
    done = standin(
        "evndisp",
        "-sourcefile",
        "a.h5",
        "-outputfile",
        "b.root",
        cwd=tmp_path,
        CTAPROD_STANDIN_SECONDS="1.0",
    )
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - start >= 1.0


def test_missing_input_and_bad_options_are_clear(tmp_path: Path) -> None:
    done = standin("ctapipe-process", "--input", "nope.h5", "--output", "o.h5", cwd=tmp_path)
    assert (done.returncode, "input file nope.h5 not found" in done.stderr) == (2, True)
    done = standin("ctapipe-apply-models", "--input", "nope.h5", cwd=tmp_path)
    assert done.returncode == 2
    assert "--output" in done.stderr
    done = standin("corsika", cwd=tmp_path)
    assert done.returncode == 2
    assert "no stand-in for corsika" in done.stderr


def test_launcher_runs_per_input_and_collects(tmp_path: Path) -> None:
    for name in ("a.zst", "b.zst"):
        (tmp_path / name).write_bytes(name.encode())
    done = launch(
        "--inputs",
        "/l/a.zst",
        "/l/b.zst",
        "--outputs",
        "/o/a.h5",
        "/o/b.h5",
        "--each",
        "--",
        "ctapipe-process",
        "--input",
        "@IN@",
        "--output",
        "@OUT@",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "a.h5").read_bytes() != (tmp_path / "b.h5").read_bytes()
    done = launch(
        "--outputs",
        "/o/x.zst",
        "--collect",
        "Data/*-nothing.simtel.zst",
        "--",
        "dirac_prod_run",
        *MC_ARGS,
        cwd=tmp_path,
        NSHOW="5",
    )
    assert done.returncode == 2
    assert "no file matches 'Data/*-nothing.simtel.zst'" in done.stderr
    failing = launch("--", "ctapipe-merge", "--output", "m.h5", "missing.h5", cwd=tmp_path)
    assert failing.returncode == 2
    assert "missing.h5 not found" in failing.stderr


def test_site_software_modes(tmp_path: Path) -> None:
    """CVMFS: the program of the package's version under the site's root; Apptainer: the
    program inside the image; the site's environment wins over the job's default."""
    root = tmp_path / "cvmfs"
    program = root / "ctapipe" / "v1" / "bin" / "ctapipe-process"
    program.parent.mkdir(parents=True)
    program.write_text('#!/bin/sh\necho "cvmfs ctapipe-process $*" > ran.txt\n')
    program.chmod(0o755)
    done = launch(
        "--software",
        "cvmfs",
        "--",
        "ctapipe-process",
        "--input",
        "x",
        cwd=tmp_path,
        CTAPROD_CTA_CVMFS_ROOT=str(root),
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "ran.txt").read_text() == "cvmfs ctapipe-process --input x\n"
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "apptainer"
    fake.write_text('#!/bin/sh\necho "apptainer $*" > ran.txt\n')
    fake.chmod(0o755)
    done = launch(
        "--software",
        "standin",
        "--",
        "ctapipe-process",
        "--input",
        "x",
        cwd=tmp_path,
        CTAPROD_CTA_SOFTWARE="apptainer",
        CTAPROD_CTA_IMAGE="/images/{package}_{version}.sif",
        PATH=f"{bindir}:{os.environ['PATH']}",
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "ran.txt").read_text() == (
        "apptainer exec /images/ctapipe_v1.sif ctapipe-process --input x\n"
    )
    done = launch("--", "ctapipe-process", cwd=tmp_path, CTAPROD_CTA_SOFTWARE="conda")
    assert done.returncode == 2
    assert "unknown CTA software mode 'conda'" in done.stderr
    done = launch(
        "--software",
        "cvmfs",
        "--",
        "ctapipe-process",
        cwd=tmp_path,
        CTAPROD_CTA_CVMFS_ROOT=str(tmp_path / "none"),
    )
    assert done.returncode == 2
    assert "cannot run" in done.stderr
