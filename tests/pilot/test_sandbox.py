"""Payload sandboxes: the command lines they build, and what a bwrap payload can see."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from ctaprod.pilot import sandbox as sb
from ctaprod.pilot.sandbox import Apptainer, Bubblewrap, Sandbox, SandboxError, make_sandbox
from ctaprod.pilot.watchdog import Limits, Outcome, run_payload

needs_bwrap = pytest.mark.skipif(
    sb.bwrap_works("bwrap") is not None, reason="bubblewrap unusable (scripts/install-sandbox.sh)"
)


def pairs(argv: list[str], option: str) -> list[tuple[str, str]]:
    return [(argv[i + 1], argv[i + 2]) for i, a in enumerate(argv) if a == option]


def test_none_passes_the_command_through(tmp_path: Path) -> None:
    argv, env = Sandbox().wrap(["sh", "-c", "true"], tmp_path, {"A": "1"})
    assert (argv, env) == (["sh", "-c", "true"], {"A": "1"})
    assert not Sandbox().isolated


def test_bwrap_argv(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for d in ("usr/bin", "etc/ssl", "cvmfs/cta.cvmfs"):
        (root / d).mkdir(parents=True)
    (root / "bin").symlink_to("usr/bin")
    (root / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (root / "etc/shadow").write_text("secret\n")
    work = tmp_path / "pilot"
    job = work / "job_7"
    box = Bubblewrap(
        binary="/usr/bin/bwrap", hide=[work], extra_binds=["/site:/opt/site"], root=root
    )
    argv, env = box.wrap(["./run", "a b"], job, {"X": "1"})
    assert env == {"X": "1"}
    assert argv[0] == "/usr/bin/bwrap"
    for flag in ("--unshare-pid", "--unshare-ipc", "--die-with-parent", "--new-session"):
        assert flag in argv
    assert argv[argv.index("--cap-drop") + 1] == "ALL"
    assert argv[7:13] == ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    ro = pairs(argv, "--ro-bind")
    assert (str(root / "usr"), "/usr") in ro
    assert (str(root / "etc/passwd"), "/etc/passwd") in ro
    assert (str(root / "etc/ssl"), "/etc/ssl") in ro
    assert (str(root / "cvmfs"), "/cvmfs") in ro
    assert ("/site", "/opt/site") in ro
    assert not any("shadow" in src for src, _ in ro)  # /etc is not bound whole
    assert ("usr/bin", "/bin") in pairs(argv, "--symlink")
    for p in sb.python_paths():  # the Python and ctaprod the payload may need
        assert (str(p), str(p)) in ro
    # the job directory: the only writable path, bound after the pilot's directory is hidden
    assert pairs(argv, "--bind") == [(str(job), str(job))]
    assert argv.index("--tmpfs", 13) < argv.index("--bind")
    assert argv[argv.index("--tmpfs", 13) + 1] == str(work)
    assert argv[argv.index("--chdir") + 1] == str(job)
    assert ("HOME", str(job)) in pairs(argv, "--setenv")
    assert argv[-3:] == ["--", "./run", "a b"]


def test_python_paths_are_outermost_and_exist() -> None:
    paths = sb.python_paths()
    assert paths
    assert all(p.is_absolute() and p.exists() for p in paths)
    assert not any(p != q and p.is_relative_to(q) for p in paths for q in paths)
    assert any(Path(sys.prefix).resolve().is_relative_to(p) for p in paths)


def test_apptainer_argv_and_environment(tmp_path: Path) -> None:
    box = Apptainer(
        image="/cvmfs/cta.img", binary="/usr/bin/apptainer", extra_binds=["/data:/d:ro"]
    )
    argv, env = box.wrap(
        ["python", "-m", "x"],
        tmp_path,
        {"PATH": "/usr/bin", "CTAPROD_JOB_ID": "5", "MY": "v", "LD_LIBRARY_PATH": "/x"},
    )
    assert argv[:4] == ["/usr/bin/apptainer", "exec", "--containall", "--cleanenv"]
    assert pairs(argv, "--bind")[0][0] == str(tmp_path)
    assert "/data:/d:ro" in argv
    assert argv[argv.index("--pwd") + 1] == str(tmp_path)
    assert argv[-4:] == ["/cvmfs/cta.img", "python", "-m", "x"]
    # --cleanenv: the job's variables go in as APPTAINERENV_*, host paths do not
    assert env["APPTAINERENV_CTAPROD_JOB_ID"] == "5"
    assert env["APPTAINERENV_MY"] == "v"
    assert env["APPTAINERENV_HOME"] == str(tmp_path)
    assert "APPTAINERENV_LD_LIBRARY_PATH" not in env
    assert "APPTAINERENV_PATH" not in env


def test_make_sandbox_errors_and_fallback(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(SandboxError, match="unknown sandbox"):
        make_sandbox("docker")
    with pytest.raises(SandboxError, match="no image"):
        make_sandbox("apptainer")
    with pytest.raises(SandboxError, match="no-such-apptainer not found on PATH"):
        make_sandbox("apptainer", image="/i.sif", apptainer="no-such-apptainer")
    with pytest.raises(SandboxError, match="no-such-bwrap not found"):
        make_sandbox("bwrap", bwrap="no-such-bwrap")
    assert isinstance(make_sandbox("none"), Sandbox)
    with caplog.at_level(logging.WARNING, "ctaprod.pilot.sandbox"):
        box = make_sandbox("auto", bwrap="no-such-bwrap")
    assert not box.isolated
    assert "payloads are NOT isolated" in caplog.text


@needs_bwrap
def test_bwrap_payload_sees_its_job_directory_only(tmp_path: Path) -> None:
    work = tmp_path / "pilot"
    job, other = work / "job_1", work / "job_2"
    for d in (job, other):
        d.mkdir(parents=True)
    (other / "final_status.json").write_text('{"token": "x"}')
    (work / "pilot.log").write_text("pilot secrets\n")
    box = make_sandbox("bwrap", work_dir=work)
    assert box.isolated
    script = (
        "import os, sys\n"
        "open('written', 'w').write('ok')\n"
        f"print(sorted(os.listdir({str(work)!r})))\n"
        "print(sorted(p for p in os.listdir('/proc') if p.isdigit()))\n"
        "print(os.path.exists('/root/.bashrc') or os.path.exists('/etc/shadow'))\n"
        "print(os.getcwd(), os.environ['HOME'])\n"
        "import ctaprod.cta.run\n"
        "try:\n"
        "    open('/usr/x', 'w')\n"
        "except OSError as exc:\n"
        "    print('read-only', exc.errno)\n"
    )
    argv, env = box.wrap([sys.executable, "-c", script], job, {"PATH": os.environ["PATH"]})
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "['job_1']"  # not job_2, not the pilot's log
    assert lines[1] in ("['1', '2']", "['1', '2', '3']")  # its own PID namespace
    assert lines[2] == "False"
    assert lines[3] == f"{job} {job}"
    assert lines[4].startswith("read-only")
    assert (job / "written").read_text() == "ok"


@needs_bwrap
def test_bwrap_exit_status_and_missing_command(tmp_path: Path) -> None:
    box = make_sandbox("bwrap", work_dir=tmp_path)
    argv, env = box.wrap(["/bin/sh", "-c", "exit 7"], tmp_path, {"PATH": "/usr/bin:/bin"})
    assert subprocess.run(argv, env=env, check=False).returncode == 7
    argv, env = box.wrap(["no-such-command"], tmp_path, {"PATH": "/usr/bin:/bin"})
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    assert done.returncode != 0
    assert "no-such-command" in done.stderr


def test_bwrap_probe_reports_a_missing_binary() -> None:
    assert sb.bwrap_works("no-such-bwrap") == "no-such-bwrap not found on PATH"
    if shutil.which("bwrap"):
        assert sb.bwrap_works("bwrap") is None


@needs_bwrap
@pytest.mark.parametrize(
    ("code", "limits", "outcome"),
    [
        ("while True: pass", Limits(cpu_seconds=1.0, wall_seconds=30), Outcome.CPU_LIMIT),
        (
            "import time; b = bytearray(300 << 20); time.sleep(30)",
            Limits(memory_bytes=150 << 20, wall_seconds=30),
            Outcome.MEMORY_LIMIT,
        ),
    ],
)
def test_limits_are_measured_across_the_sandbox(
    tmp_path: Path, code: str, limits: Limits, outcome: Outcome
) -> None:
    """The watchdog sees the sandboxed processes from the host's /proc: CPU time and memory
    limits hold, and the supervisor kills the whole sandbox."""
    box = make_sandbox("bwrap", work_dir=tmp_path)
    argv, env = box.wrap([sys.executable, "-c", code], tmp_path, {"PATH": "/usr/bin:/bin"})
    result = run_payload(
        argv,
        cwd=tmp_path,
        env=env,
        stdout_path=tmp_path / "out",
        stderr_path=tmp_path / "err",
        limits=limits,
        poll_interval=0.1,
        kill_grace=1.0,
    )
    assert result.outcome is outcome, result.message
    if outcome is Outcome.CPU_LIMIT:
        assert result.usage.cpu_seconds >= 1.0
    else:
        assert result.usage.peak_rss_bytes > 150 << 20
    leftovers = [p.pid for p in psutil.process_iter(["cwd"]) if p.info["cwd"] == str(tmp_path)]
    assert leftovers == []


def test_bwrap_mounts_parents_first(tmp_path: Path) -> None:
    """A pilot started in a directory that holds its virtualenv hides the directory, not
    the virtualenv; a work directory inside a bound directory is hidden."""
    home = tmp_path / "home"
    venv = home / "venv"
    venv.mkdir(parents=True)
    box = Bubblewrap(binary="bwrap", hide=[home, Path("/usr/x/work")], extra_binds=[str(venv)])
    argv, _ = box.wrap(["true"], home / "job_1", {})
    assert argv.index(str(home)) < argv.index(str(venv))  # tmpfs home, then venv on top
    assert argv.index("/usr") < argv.index("/usr/x/work")  # /usr, then its hidden part


def test_pilot_refuses_to_run_jobs_without_its_sandbox(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from ctaprod.pilot.config import PilotConfig
    from ctaprod.pilot.loop import EXIT_FAILED, run_pilot

    if shutil.which("apptainer"):
        pytest.skip("apptainer is installed here")
    config = PilotConfig(
        url="http://127.0.0.1:9",  # never asked: the pilot stops before registering
        token="t",
        work_dir=tmp_path / "w",
        sandbox="apptainer",
        apptainer_image="/cvmfs/x.sif",
    )
    with caplog.at_level(logging.ERROR, "ctaprod.pilot"):
        assert run_pilot(config) == EXIT_FAILED
    assert "sandbox apptainer: apptainer not found on PATH; no job is run" in caplog.text
