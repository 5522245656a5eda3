"""``ctaprod job ...`` against a live server: submit, list, inspect, control, wait."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.cli.conftest import Cli

SCRIPT = "#!/bin/sh\necho hello from $1\n"


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _jdl(tmp_path: Path, extra: str = "", name: str = "job.jdl") -> Path:
    _write(tmp_path, "run.sh", SCRIPT)
    return _write(
        tmp_path,
        name,
        f'[\n  Executable = "run.sh";\n  Arguments = "x";\n  JobName = "cli_test";\n'
        f'  InputSandbox = {{"run.sh"}};\n{extra}]\n',
    )


def _ids(stdout: str) -> list[int]:
    """The job IDs of ``... submitted N jobs: 1-3,7`` lines."""
    out: list[int] = []
    for line in stdout.splitlines():
        match = re.search(r"submitted \d+ jobs?: ([\d,-]+)$", line)
        if match:
            for part in match.group(1).split(","):
                lo, _, hi = part.partition("-")
                out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def _row(table: str, job_id: int) -> int:
    match = re.search(rf"^{job_id}\t", table, re.MULTILINE)
    assert match, f"no row for job {job_id}"
    return match.start()


def test_submit_uploads_the_sandbox_and_jobs_wait(cli: Cli, tmp_path: Path) -> None:
    result = cli("job", "submit", str(_jdl(tmp_path)))
    [job_id] = _ids(result.stdout)
    status = cli("job", "status", str(job_id)).stdout
    assert re.search(rf"\b{job_id}\b.*Waiting", status)
    shown = cli("job", "show", str(job_id)).stdout
    assert "cli_test" in shown
    assert re.search(r'InputSandbox = \{"SB:[0-9a-f]{64}"\}', shown)


def test_parametric_jdl_gives_one_id_per_parameter(cli: Cli, tmp_path: Path) -> None:
    extra = "  Parameters = 25;\n  ParameterStart = 1;\n  ParameterStep = 1;\n"
    result = cli("job", "submit", str(_jdl(tmp_path, extra)))
    ids = _ids(result.stdout)
    assert len(ids) == 25
    assert f"submitted 25 jobs: {ids[0]}-{ids[-1]}" in result.stdout


def test_several_files_and_json_output(cli: Cli, tmp_path: Path) -> None:
    first = _jdl(tmp_path, name="a.jdl")
    yaml_file = _write(tmp_path, "b.yaml", "Executable: run.sh\nInputSandbox: [run.sh]\n")
    result = cli("job", "submit", "--json", str(first), str(yaml_file))
    ids = json.loads(result.stdout)["job_ids"]
    assert len(ids) == 2
    listed = cli("job", "status", *map(str, ids)).stdout
    assert listed.count("Waiting") == 2


def test_malformed_jdl_names_line_and_column(cli: Cli, tmp_path: Path) -> None:
    bad = _write(tmp_path, "bad.jdl", '[\n  Executable = "run.sh";\n  Arguments = ;\n]\n')
    result = cli("job", "submit", str(bad), code=1)
    assert "line 3, column" in result.stderr
    assert result.stderr.startswith("Error: ")
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""


def test_unknown_attribute_and_missing_sandbox_file(cli: Cli, tmp_path: Path) -> None:
    typo = _write(tmp_path, "typo.jdl", '[ Executabel = "x"; ]\n')
    assert "did you mean 'Executable'" in cli("job", "submit", str(typo), code=1).stderr
    missing = _write(tmp_path, "miss.jdl", '[ Executable = "x"; InputSandbox = {"nope.sh"}; ]\n')
    assert "nope.sh" in cli("job", "submit", str(missing), code=1).stderr
    assert cli("job", "submit", str(tmp_path / "absent.jdl"), code=2).exit_code == 2


def test_list_summary_history(cli: Cli, tmp_path: Path) -> None:
    extra = "  Parameters = 3;\n  ParameterStep = 1;\n"
    ids = _ids(cli("job", "submit", str(_jdl(tmp_path, extra))).stdout)
    listing = cli("job", "list").stdout
    positions = [_row(listing, i) for i in ids]
    assert positions == sorted(positions, reverse=True), "newest first"
    assert listing.count("Waiting") == 3
    page = cli("job", "list", "--limit", "2")
    assert page.stdout.count("Waiting") == 2
    assert "more with --all or --cursor" in page.stderr
    assert cli("job", "list", "--all").stdout.count("Waiting") == 3
    assert "Waiting" not in cli("job", "list", "--status", "done").stdout
    assert cli("job", "list", "--owner", "admin", "--type", "User").stdout.count("Waiting") == 3

    summary = cli("job", "summary", "--by", "owner").stdout
    assert re.search(r"admin\t3\t3", summary)
    history = cli("job", "history", str(ids[0])).stdout
    for status in ("Received", "Checking", "Waiting"):
        assert status in history


def test_kill_reschedule_delete_and_illegal_transitions(cli: Cli, tmp_path: Path) -> None:
    extra = "  Parameters = 3;\n"
    ids = _ids(cli("job", "submit", str(_jdl(tmp_path, extra))).stdout)
    first, last = ids[0], ids[-1]
    refused = cli("job", "reschedule", str(first), code=1)
    assert "Waiting" in refused.stderr
    assert "(HTTP 409)" in refused.stderr

    assert f"Killed 3 jobs: {first}-{last}" in cli("job", "kill", f"{first}-{last}").stdout
    again = cli("job", "kill", str(first), code=1)
    assert "Killed" in again.stderr
    assert "(HTTP 409)" in again.stderr

    rescheduled = cli("job", "reschedule", str(first)).stdout
    assert re.search(rf"{first}\tWaiting", rescheduled)
    assert "Deleted 2 jobs" in cli("job", "delete", f"{first + 1},{last}").stdout
    assert re.search(rf"{last}\tDeleted", cli("job", "status", str(last)).stdout)


def test_bad_ids_are_usage_errors(cli: Cli) -> None:
    assert cli("job", "kill", "abc", code=2).exit_code == 2
    assert cli("job", "status", "20-10", code=2).exit_code == 2
    unknown = cli("job", "status", "999999", code=1)
    assert "no job 999999" in unknown.stderr
    assert "(HTTP 404)" in cli("job", "show", "999999", code=1).stderr


def test_wait_times_out_on_waiting_jobs(cli: Cli, tmp_path: Path) -> None:
    ids = _ids(cli("job", "submit", str(_jdl(tmp_path, "  Parameters = 2;\n"))).stdout)
    result = cli("job", "status", *map(str, ids), "--wait", "--timeout", "1", code=1)
    assert "timed out" in result.stderr
    assert "2 jobs: 2 Waiting" in result.stdout


def _register(cli: Cli, tmp_path: Path, lfns: list[str]) -> None:
    docs = [{"lfn": lfn, "size": 5, "checksum": "a1", "se": "LOCAL-DISK"} for lfn in lfns]
    regs = _write(tmp_path, "regs.json", json.dumps(docs))
    cli("dm", "register", "--no-verify", str(regs))


def test_lfn_placeholders_in_input_sandbox(cli: Cli, tmp_path: Path) -> None:
    lfns = ["/ctao/user/admin/in_a.txt", "/ctao/user/admin/in_b.txt"]
    _register(cli, tmp_path, lfns)
    # %s in an LFN, and DIRAC's Job API form: a named set appended as %(InputSandbox)s.
    extra = (
        "  Parameters = {a, b};\n"
        '  Parameters.InputSandbox = {"LFN:/ctao/user/admin/in_b.txt",'
        ' "LFN:/ctao/user/admin/in_a.txt"};\n'
        '  Tail = "%(InputSandbox)s";\n'
    )
    jdl = _write(
        tmp_path,
        "lfn.jdl",
        '[\n  Executable = "run.sh";\n  InputSandbox = {"run.sh", "LFN:/ctao/user/admin/in_%s.txt",'
        ' "%(InputSandbox)s"};\n' + extra + "]\n",
    )
    _write(tmp_path, "run.sh", SCRIPT)
    ids = _ids(cli("job", "submit", str(jdl)).stdout)
    assert len(ids) == 2
    shown = [cli("job", "show", str(i)).stdout for i in ids]
    for text, (mine, other) in zip(shown, (("a", "b"), ("b", "a")), strict=True):
        # Job n: its own %s LFN, then set InputSandbox's value n, then the uploaded run.sh.
        assert re.search(
            rf'InputSandbox = \{{"LFN:/ctao/user/admin/in_{mine}.txt", '
            rf'"LFN:/ctao/user/admin/in_{other}.txt", "SB:[0-9a-f]{{64}}"\}};',
            text,
        ), text
    # The custom attribute is a job parameter, shown by `job show`.
    assert re.search(r"Tail\tLFN:/ctao/user/admin/in_b.txt", shown[0])
    assert re.search(r"Tail\tLFN:/ctao/user/admin/in_a.txt", shown[1])


def test_local_files_named_by_placeholders_are_uploaded(cli: Cli, tmp_path: Path) -> None:
    _write(tmp_path, "run.sh", SCRIPT)
    for n in range(3):
        _write(tmp_path, f"cfg_{n}.txt", f"config {n}\n")
    jdl = _jdl(tmp_path, '  Parameters = 3;\n  Tags = {"x"};\n').read_text()
    jdl = jdl.replace('InputSandbox = {"run.sh"}', 'InputSandbox = {"run.sh", "cfg_%n.txt"}')
    ids = _ids(cli("job", "submit", str(_write(tmp_path, "local.jdl", jdl))).stdout)
    assert len(ids) == 3
    for i in ids:
        shown = cli("job", "show", str(i)).stdout
        assert re.search(r'InputSandbox = \{"SB:[0-9a-f]{64}"\}', shown)
        assert "cfg_" not in shown.split("InputSandbox")[1].split(";")[0]
    missing = _write(tmp_path, "missing.jdl", jdl.replace("Parameters = 3", "Parameters = 4"))
    assert "cfg_3.txt" in cli("job", "submit", str(missing), code=1).stderr
