"""Payload sandboxes: what a job's payload can see of the worker node.

The pilot runs each payload through a :class:`Sandbox`, chosen by ``CTAPROD_PILOT_SANDBOX``:

- ``none``: the payload runs as the pilot's user, in its job directory, and can read what
  that user can (other job directories, the pilot's work directory, ``/proc`` of the pilot);
- ``bwrap`` (bubblewrap): a new mount and PID namespace whose root is an empty tmpfs with
  read-only binds of the system (``/usr``, the needed parts of ``/etc``), of the Python the
  payload needs, of ``/cvmfs`` when present, and of the job directory read-write (also the
  working directory and ``HOME``); the pilot's work directory, the other jobs, the server's
  state and the user's home are not there, ``/proc`` shows the payload's own processes only,
  ``/tmp`` is private, and no capability is kept (even for root);
- ``apptainer``: ``apptainer exec --containall --cleanenv`` of a site image (often on
  CVMFS) with the job directory bound as working directory;
- ``auto``: ``bwrap`` if it is installed and works here, else ``none`` with a warning.

A sandbox only rewrites the command line and the environment: the payload still runs below
the supervisor (:mod:`ctaprod.pilot.reaper`), whose process tree (seen from the host's
``/proc``) includes every sandboxed process, so CPU, memory, kills and heartbeats work as
without one.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger("ctaprod.pilot.sandbox")

SANDBOX_KINDS = ("auto", "none", "bwrap", "apptainer")

# What a payload needs of /etc: users, name resolution, certificates, the dynamic linker,
# time zone. Not the whole directory: it may hold host keys and site secrets.
ETC_ENTRIES = (
    "passwd",
    "group",
    "nsswitch.conf",
    "hosts",
    "host.conf",
    "resolv.conf",
    "gai.conf",
    "services",
    "protocols",
    "networks",
    "localtime",
    "timezone",
    "ssl",
    "ca-certificates",
    "pki",
    "crypto-policies",
    "grid-security/certificates",
    "vomses",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "alternatives",
    "os-release",
    "debian_version",
    "redhat-release",
    "mime.types",
    "magic",
    "terminfo",
    "profile",
    "bash.bashrc",
    "inputrc",
    "locale.alias",
    "machine-id",
)
# Top-level directories bound read-only (as links when they are links, as /lib is on a
# merged-/usr system).
SYSTEM_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "opt/conda")
# Variables of the pilot's environment that describe the host, not the job: an Apptainer
# container has its own.
HOST_ONLY = frozenset(
    {"PATH", "LD_LIBRARY_PATH", "PYTHONPATH", "PYTHONHOME", "HOME", "TMPDIR", "SHELL", "PWD"}
)


class SandboxError(Exception):
    """The configured sandbox cannot be used on this node (the message says why)."""


class Sandbox:
    """No isolation: the payload runs as it is (the base of the other kinds)."""

    name = "none"
    isolated = False

    def wrap(
        self, argv: Sequence[str], job_dir: Path, env: Mapping[str, str]
    ) -> tuple[list[str], dict[str, str]]:
        """The command line and environment that run ``argv`` in ``job_dir``, sandboxed."""
        return list(argv), dict(env)

    def describe(self) -> str:
        return "none (payloads are not isolated from the pilot)"


def python_paths() -> list[Path]:
    """What a payload needs to run this Python and ``python -m ctaprod...``: the prefixes
    (the virtual environment and the interpreter's own) and the directory ctaprod is
    imported from when it is not installed below them (a development checkout)."""
    import ctaprod

    paths = {
        Path(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix) if p
    }
    paths.add(Path(ctaprod.__file__).resolve().parent.parent)
    paths.add(Path(sys.executable).resolve().parent.parent)
    resolved = sorted({p.resolve() for p in paths if p.exists()})
    # keep the outermost directories only
    return [p for p in resolved if not any(q != p and p.is_relative_to(q) for q in resolved)]


@dataclass
class Bubblewrap(Sandbox):
    """bubblewrap (``bwrap``): see the module docstring."""

    binary: str = "bwrap"
    hide: list[Path] = field(default_factory=list)  # masked with an empty tmpfs
    extra_binds: list[str] = field(default_factory=list)  # "path" or "src:dest", read-only
    root: Path = Path("/")  # where the system directories are looked up (tests)

    name = "bwrap"
    isolated = True

    def _ro_binds(self) -> list[tuple[Path, Path]]:
        """(source, destination) pairs of the read-only binds, system first."""
        binds: list[tuple[Path, Path]] = []
        for rel in SYSTEM_DIRS:
            if (self.root / rel).exists():
                binds.append((self.root / rel, Path("/") / rel))
        for rel in ETC_ENTRIES:
            if (self.root / "etc" / rel).exists():
                binds.append((self.root / "etc" / rel, Path("/etc") / rel))
        if (self.root / "cvmfs").is_dir():
            binds.append((self.root / "cvmfs", Path("/cvmfs")))
        for p in python_paths():
            binds.append((p, p))
        for spec in self.extra_binds:
            src, _, dest = spec.partition(":")
            binds.append((Path(src), Path(dest or src)))
        return binds

    def wrap(
        self, argv: Sequence[str], job_dir: Path, env: Mapping[str, str]
    ) -> tuple[list[str], dict[str, str]]:
        job = job_dir.absolute()
        cmd = [
            self.binary,
            "--unshare-pid",
            "--unshare-ipc",
            "--die-with-parent",
            "--new-session",
            "--cap-drop",
            "ALL",
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--tmpfs",
            "/tmp",
        ]
        # Mounts go parents first: a hidden directory (the pilot's) inside a bound one is
        # covered by its tmpfs, a bound one (a virtualenv) inside a hidden one stays visible.
        mounts: list[tuple[Path, list[str]]] = []
        for src, dest in self._ro_binds():
            if src.is_symlink() and dest.parent == Path("/"):
                mounts.append((dest, ["--symlink", os.readlink(src), str(dest)]))
            else:
                mounts.append((dest, ["--ro-bind", str(src), str(dest)]))
        for hidden in self.hide:
            mounts.append((hidden.absolute(), ["--tmpfs", str(hidden.absolute())]))
        for _dest, args in sorted(mounts, key=lambda m: len(m[0].parts)):
            cmd += args
        cmd += ["--bind", str(job), str(job), "--chdir", str(job)]
        cmd += ["--setenv", "HOME", str(job), "--setenv", "TMPDIR", "/tmp"]
        cmd += ["--", *argv]
        return cmd, dict(env)

    def describe(self) -> str:
        return f"bwrap ({self.binary})"


@dataclass
class Apptainer(Sandbox):
    """Apptainer (or Singularity): ``apptainer exec --containall --cleanenv`` of ``image``."""

    image: str = ""
    binary: str = "apptainer"
    extra_binds: list[str] = field(default_factory=list)  # apptainer --bind specs

    name = "apptainer"
    isolated = True

    def wrap(
        self, argv: Sequence[str], job_dir: Path, env: Mapping[str, str]
    ) -> tuple[list[str], dict[str, str]]:
        job = str(job_dir.absolute())
        cmd = [self.binary, "exec", "--containall", "--cleanenv", "--bind", job]
        if Path("/cvmfs").is_dir():
            cmd += ["--bind", "/cvmfs:/cvmfs:ro"]
        for spec in self.extra_binds:
            cmd += ["--bind", spec]
        cmd += ["--pwd", job, self.image, *argv]
        # --cleanenv starts from nothing; APPTAINERENV_X becomes X inside the container.
        outer = {k: v for k, v in env.items() if k in ("PATH", "HOME", "USER", "LANG", "TZ")}
        for key, value in env.items():
            if key not in HOST_ONLY and not key.startswith(("APPTAINER", "SINGULARITY")):
                outer[f"APPTAINERENV_{key}"] = value
        outer["APPTAINERENV_HOME"] = job
        return cmd, outer

    def describe(self) -> str:
        return f"apptainer ({self.binary}, image {self.image})"


@functools.cache
def bwrap_works(binary: str) -> str | None:
    """None if ``binary`` can run a sandboxed command here, else why not (checked once)."""
    path = shutil.which(binary)
    if path is None:
        return f"{binary} not found on PATH"
    try:
        with tempfile.TemporaryDirectory(prefix="ctaprod-bwrap-probe-") as tmp:
            argv, _ = Bubblewrap(binary=path).wrap(["true"], Path(tmp), {})
            done = subprocess.run(
                argv, capture_output=True, timeout=30, env={"PATH": "/usr/bin:/bin"}, check=False
            )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{binary} cannot be run: {exc}"
    if done.returncode != 0:
        return f"{binary} does not work here: {done.stderr.decode(errors='replace').strip()}"
    return None


def make_sandbox(
    kind: str,
    *,
    work_dir: Path | None = None,
    image: str = "",
    binds: Sequence[str] = (),
    bwrap: str = "bwrap",
    apptainer: str = "apptainer",
) -> Sandbox:
    """The sandbox of ``kind`` (see :data:`SANDBOX_KINDS`); SandboxError if it was asked
    for explicitly and cannot work here. ``auto`` falls back to none with a warning."""
    kind = kind.strip().lower() or "auto"
    if kind not in SANDBOX_KINDS:
        raise SandboxError(f"unknown sandbox {kind!r} (known: {', '.join(SANDBOX_KINDS)})")
    hide = [work_dir] if work_dir is not None else []
    if kind in ("auto", "bwrap"):
        problem = bwrap_works(bwrap)
        if problem is None:
            return Bubblewrap(binary=shutil.which(bwrap) or bwrap, hide=hide, extra_binds=[*binds])
        if kind == "bwrap":
            raise SandboxError(f"sandbox bwrap: {problem}")
        logger.warning(
            "payloads are NOT isolated: no usable sandbox (%s); a payload can read what "
            "the pilot's user can read (install bubblewrap, or set CTAPROD_PILOT_SANDBOX)",
            problem,
        )
        return Sandbox()
    if kind == "apptainer":
        if not image:
            raise SandboxError("sandbox apptainer: no image (CTAPROD_PILOT_APPTAINER_IMAGE)")
        path = shutil.which(apptainer)
        if path is None:
            raise SandboxError(f"sandbox apptainer: {apptainer} not found on PATH")
        return Apptainer(image=image, binary=path, extra_binds=[*binds])
    return Sandbox()
