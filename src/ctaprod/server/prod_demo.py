"""`ctaprod demo`: the main job. A 3-step CTA production on the embedded default, to the end.

Starts ``ctaprod up`` as a real process (server, agents, Local CE and local storage on
SQLite) in a state directory, submits the production of ``demo_production.yml`` (CTADIRAC's
format: MC simulation -> ctapipe processing -> merging, the CTA programs replaced by their
stand-ins), starts it, shows the live view per step while real pilot processes run the jobs,
and ends with the validation report (every output registered once, with its metadata, on
storage with the right size and checksum, nothing orphaned or duplicated).

``--chaos`` makes the run hostile, and it must still end complete and valid:

- the stand-in payloads fail at random (``CTAPROD_STANDIN_FAILURE_RATE``): the job system
  reschedules them;
- a pilot running a payload is killed with SIGKILL once the simulation is under way;
- the target storage element is banned for writing for a while (outputs go to the failover
  SE, and failover requests move them once it is back);
- ``ctaprod up`` itself (server and agents) is killed with SIGKILL during the processing
  step, and started again on the same state directory.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import IO, Any

import psutil
from rich.console import Console
from rich.live import Live

from ctaprod.cli.prod import live_view
from ctaprod.client.http import Client
from ctaprod.core.prod_views import ProductionStatusView
from ctaprod.core.transformations import load_definition

NAME = "demo"
TARGET_SE = "LOCAL-DISK"
FAILURE_RATE = 0.1  # of stand-in payloads under --chaos (each job is retried up to 3 times)
BAN_SECONDS = 15.0
ENDED = {"Completed", "Cleaned"}


def definition() -> dict[str, Any]:
    """The demo's production file, as shipped with ctaprod."""
    text = resources.files("ctaprod.server").joinpath("demo_production.yml").read_text()
    return load_definition(text)


@dataclass
class Up:
    """``ctaprod up`` as a child process that can be killed and started again."""

    state_dir: Path
    port: int
    slots: int
    extra_env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = dict(
            os.environ,
            CTAPROD_STATE_DIR=str(self.state_dir),
            CTAPROD_PORT=str(self.port),
            CTAPROD_CONFIG_DIR=str(self.state_dir / "client"),
            **self.extra_env,
        )
        env.pop("CTAPROD_DATABASE_URL", None)
        if self.log is None:
            self.log = (self.state_dir / "up.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ctaprod.cli.main", "up", "--slots", str(self.slots)],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.wait_healthy(60)

    def wait_healthy(self, timeout: float) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        with Client(self.url, None) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise SystemExit(f"ctaprod up exited with code {self.proc.returncode}")
                try:
                    client.health()
                    return
                except Exception:
                    time.sleep(0.3)
        raise SystemExit("ctaprod up did not answer in time")

    def token(self) -> str:
        return (self.state_dir / "client" / "token").read_text().strip()

    def pilots(self) -> list[psutil.Process]:
        """The pilot processes this ``ctaprod up`` started (and that still run)."""
        if self.proc is None:
            return []
        try:
            children = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        out = []
        for child in children:
            try:
                if "ctaprod.pilot" in " ".join(child.cmdline()):
                    out.append(child)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return out

    def kill(self) -> None:
        """SIGKILL: no shutdown at all (its pilots keep running, as on a crashed server)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if self.log is not None:
            self.log.close()
            self.log = None


@dataclass
class Chaos:
    """The faults of ``--chaos``, each injected once, when the production reaches it."""

    up: Up
    say: Callable[[str], None]
    pilot_killed: bool = False
    banned_at: float | None = None
    unbanned: bool = False
    restarted: bool = False

    def step(self, client: Client, view: ProductionStatusView) -> Client:
        """Inject what is due; returns the client to go on with (a new one after a restart)."""
        sim, proc = view.steps[0], view.steps[1]
        if not self.pilot_killed and sim.tasks.get("Done", 0) >= 3:
            busy = [p for p in self.up.pilots() if p.children()]
            if busy:
                busy[0].send_signal(signal.SIGKILL)
                self.pilot_killed = True
                self.say(f"chaos: pilot process {busy[0].pid} killed with SIGKILL mid-payload")
        if self.pilot_killed and self.banned_at is None:
            client.se_ban(TARGET_SE, "write", "demo chaos: storage down")
            self.banned_at = time.monotonic()
            self.say(f"chaos: {TARGET_SE} banned for writing ({BAN_SECONDS:.0f} s)")
        if (
            self.banned_at is not None
            and not self.unbanned
            and time.monotonic() - self.banned_at > BAN_SECONDS
        ):
            client.se_allow(TARGET_SE, "write", "demo chaos: storage back")
            self.unbanned = True
            self.say(f"chaos: {TARGET_SE} open for writing again")
        if not self.restarted and self.unbanned and proc.tasks.get("Done", 0) >= 2:
            self.say("chaos: ctaprod up (server and agents) killed with SIGKILL")
            self.up.kill()
            client.close()
            time.sleep(2)
            self.up.start()
            self.restarted = True
            self.say("chaos: ctaprod up started again on the same state directory")
            return Client(self.up.url, self.up.token())
        return client

    @property
    def done(self) -> bool:
        return self.pilot_killed and self.unbanned and self.restarted


def run_production_demo(
    state_dir: Path,
    *,
    mc_tasks: int,
    port: int,
    slots: int,
    timeout: float,
    keep: bool,
    chaos: bool,
    payload_seconds: float,
) -> int:
    console = Console()
    state_dir.mkdir(parents=True, exist_ok=True)
    env = {"CTAPROD_STANDIN_SECONDS": str(payload_seconds)}
    if chaos:
        env["CTAPROD_STANDIN_FAILURE_RATE"] = str(FAILURE_RATE)
    up = Up(state_dir, port, slots, env)
    console.print(f"[bold]Starting ctaprod up[/] (state in {state_dir}, log in up.log)")
    up.start()
    client = Client(up.url, up.token())
    try:
        raw = definition()
        plan = client.dry_run_production(raw, name=NAME, mc_tasks=mc_tasks)
        view = client.submit_production(raw, name=NAME, mc_tasks=mc_tasks)
        console.print(
            f"Production {view.prod_id} ({view.name}) submitted from demo_production.yml "
            f"(CTADIRAC format, {len(plan.steps)} steps, {mc_tasks} MC runs) and started"
            + (
                f"; chaos: payloads fail at {FAILURE_RATE:.0%}, a pilot, the storage and "
                "the server will go down"
                if chaos
                else ""
            )
        )
        client.drive_production(view.prod_id, "start")
        client, status = _follow(client, up, view.prod_id, timeout, console, chaos)
        if status.status not in ENDED:
            console.print(f"[red]timed out: the production is {status.status}[/]")
            return 1
        console.print(f"Production {status.prod_id} is {status.status}; validating it")
        outcome = client.validate_production(status.prod_id, checksum="full")
        for line in outcome.summary.get("lines", []):
            console.print(line, markup=False, highlight=False)
        valid = outcome.validation_status == "Valid"
        console.print(
            f"[bold {'green' if valid else 'red'}]Production {status.prod_id}: "
            f"{outcome.validation_status}[/]"
        )
        return 0 if valid else 1
    finally:
        client.close()
        if keep:
            pid = up.proc.pid if up.proc else "?"
            console.print(f"ctaprod up keeps running (pid {pid}); stop it with kill")
        else:
            up.stop()


def _follow(
    client: Client, up: Up, prod_id: int, timeout: float, console: Console, chaos: bool
) -> tuple[Client, ProductionStatusView]:
    """The live view until the production ends (or the timeout), injecting the chaos."""
    deadline = time.monotonic() + timeout
    view = client.production_status(prod_id)
    with Live(live_view(view), console=console, auto_refresh=False) as live:
        injector = Chaos(up, live.console.print) if chaos else None
        while view.status not in ENDED and time.monotonic() < deadline:
            time.sleep(1)
            if injector is not None and not injector.done:
                client = injector.step(client, view)
            try:
                view = client.production_status(prod_id)
            except Exception as exc:  # the server restarting: show the last view meanwhile
                live.console.print(f"(server not answering: {type(exc).__name__})")
                continue
            live.update(live_view(view), refresh=True)
    return client, view
