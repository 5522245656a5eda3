"""`ctaprod demo-jobs`: a parametric DIRAC JDL on the embedded default, end to end.

Starts ``ctaprod up`` as a real process (server, agents, Local CE on SQLite) in a state
directory, stores an input file on the local storage element and registers it in the file
catalog, submits a parametric DIRAC JDL (input sandbox, InputData, OutputData with metadata),
lets real pilot processes run the jobs, waits for them to finish, fetches one output sandbox
and finds the jobs' outputs in the catalog by a metadata query.
"""

from __future__ import annotations

import tarfile
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ctaprod.client.http import Client
from ctaprod.client.submit import submit_file
from ctaprod.core.job_states import FINAL_STATES, JobStatus
from ctaprod.core.schemas import JobFilter
from ctaprod.server.prod_demo import Up

SCRIPT = """#!/bin/sh
# A stand-in payload: reads its input data, writes a small result file (its output data).
echo "job $CTAPROD_JOB_ID parameter $1 on $(hostname)"
sleep 0.2
echo "result of parameter $1 from $(cat corsika_demo.dat)" > result_$1.txt
echo "done with $1"
"""

INPUT_LFN = "/ctao/demo/input/corsika_demo.dat"
OUTPUT_DIR = "/ctao/demo/output"
FIELDS = {"particle": "string", "runNumber": "int", "data_level": "int"}

JDL = """[
  JobName = "demo_%s";
  JobGroup = "demo";
  Executable = "demo.sh";
  Arguments = "%s";
  Parameters = {n};
  ParameterStart = 1;
  ParameterStep = 1;
  CPUTime = 300;
  InputSandbox = {{"demo.sh"}};
  StdOutput = "StdOut";
  StdError = "StdErr";
  OutputSandbox = {{"StdOut", "StdErr", "result_%s.txt"}};
  InputData = {{"LFN:{input_lfn}"}};
  OutputData = {{"result_%s.txt"}};
  OutputSE = {{"LOCAL-DISK"}};
  OutputPath = "{output_dir}";
  OutputMetadata = "{{\\"runNumber\\": %s, \\"data_level\\": 1}}";
]
"""


def run_demo(state_dir: Path, jobs: int, port: int, slots: int, timeout: float, keep: bool) -> int:
    console = Console()
    state_dir.mkdir(parents=True, exist_ok=True)
    up = Up(state_dir, port, slots)
    console.print(f"[bold]Starting ctaprod up[/] (state in {state_dir}, log in up.log)")
    up.start()
    try:
        with Client(up.url, up.token()) as client, tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "demo.sh").write_text(SCRIPT)
            (Path(tmp) / "demo.jdl").write_text(
                JDL.format(n=jobs, input_lfn=INPUT_LFN, output_dir=OUTPUT_DIR)
            )
            _prepare_data(client, Path(tmp), console)
            ids = submit_file(client, Path(tmp) / "demo.jdl")
            console.print(f"Submitted {len(ids)} jobs ({ids[0]}-{ids[-1]}) from a parametric JDL")
            ok = _follow(client, ids, timeout, console)
            _report(client, ids, console)
            out = state_dir / "demo-output"
            out.mkdir(exist_ok=True)
            archive = out / f"job{ids[0]}.tar.gz"
            client.download_output(ids[0], archive)
            with tarfile.open(archive) as tar:
                names = tar.getnames()
                member = tar.extractfile("StdOut")
                text = member.read().decode() if member else ""
            console.print(f"Output sandbox of job {ids[0]}: {', '.join(names)}")
            console.print(f"  StdOut: {text.strip()}")
            found = _report_data(client, jobs, console)
            return 0 if ok and found == jobs else 1
    finally:
        if keep:
            pid = up.proc.pid if up.proc else "?"
            console.print(f"ctaprod up keeps running (pid {pid}); stop it with kill")
        else:
            up.stop()


def _prepare_data(client: Client, tmp: Path, console: Console) -> None:
    """Declare the demo's metadata fields, store and register its input file."""
    known = {f.name for f in client.meta_fields()}
    for name, ftype in FIELDS.items():
        if name not in known:
            client.add_meta_field(name, ftype)
    if not client.files([INPUT_LFN]):
        local = tmp / "corsika_demo.dat"
        local.write_text("simulated showers\n")
        client.data_put(local, INPUT_LFN, se="LOCAL-DISK", metadata={"data_level": -3})
    client.set_meta(OUTPUT_DIR.rsplit("/", 1)[0], {"particle": "gamma"})
    console.print(f"Input data {INPUT_LFN} stored on LOCAL-DISK and registered")


def _report_data(client: Client, jobs: int, console: Console) -> int:
    """Find the jobs' outputs by a metadata query; show one's replicas and ancestry."""
    query = {"particle": "gamma", "data_level": 1}
    count = client.count_files(query, OUTPUT_DIR).count
    console.print(f"Metadata query particle=gamma data_level=1: {count} output files found")
    first = next(iter(client.find_lfns(query, OUTPUT_DIR)), None)
    if first is not None:
        info = client.files([first])[first]
        parents = [r.lfn for r in client.ancestors(first)]
        console.print(f"  {first}: {info.size} bytes on {', '.join(info.replicas)}, from {parents}")
    return count


def _follow(client: Client, ids: list[int], timeout: float, console: Console) -> bool:
    deadline = time.monotonic() + timeout
    with Progress(
        TextColumn("jobs finished"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        task = bar.add_task("jobs", total=len(ids))
        while True:
            statuses = _statuses(client, ids)
            final = sum(1 for s in statuses.values() if s in FINAL_STATES)
            bar.update(task, completed=final)
            if final == len(ids):
                return all(s is JobStatus.DONE for s in statuses.values())
            if time.monotonic() > deadline:
                console.print("[red]timed out waiting for the jobs[/]")
                return False
            time.sleep(1)


def _statuses(client: Client, ids: list[int]) -> dict[int, JobStatus]:
    out: dict[int, JobStatus] = {}
    for i in range(0, len(ids), 1000):
        for job in client.iter_jobs(JobFilter(job_ids=ids[i : i + 1000]), page=1000):
            out[job.job_id] = job.status
    return out


def _report(client: Client, ids: list[int], console: Console) -> None:
    counts: dict[str, int] = {}
    for status in _statuses(client, ids).values():
        counts[status.value] = counts.get(status.value, 0) + 1
    table = Table(title="Demo jobs by status")
    table.add_column("status")
    table.add_column("jobs", justify="right")
    for name, n in sorted(counts.items()):
        table.add_row(name, str(n))
    console.print(table)
    pilots = client.pilots(limit=1000)
    console.print(f"{len(pilots)} pilot processes were used")
