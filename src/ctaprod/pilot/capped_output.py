"""Bounded payload output: the head and the tail of stdout and stderr, cut in the middle.

The payload writes into pipes that a pump thread of the wrapper reads. Each stream goes to a
:class:`CappedFile`, which writes the first ``head`` bytes straight to the file and keeps the
last ``tail`` bytes in memory: a payload writing gigabytes uses neither the disk nor more
memory than that. On close, the file gets a marker line saying how much was cut, then the
tail. :func:`printable_status` turns the last line of such a file into an application status.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import threading
import unicodedata
from pathlib import Path
from typing import BinaryIO

DEFAULT_MAX_BYTES = 10 * 1024 * 1024  # per stream: half head, half tail
_ALIGN = 64 * 1024  # look this far for a line start, to cut between lines
_CHUNK = 64 * 1024


def cut_marker(cut: int) -> bytes:
    """The line that replaces ``cut`` bytes of output."""
    text = f"\n[ctaprod: {cut} bytes of output cut here; the beginning and the end are kept]\n"
    return text.encode()


class CappedFile:
    """A write-only file keeping at most ``max_bytes`` of what is written: head and tail."""

    def __init__(self, path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.path = path
        self.head_limit = max_bytes - max_bytes // 2
        self.tail_limit = max_bytes // 2
        self.written = 0  # bytes in the file's head
        self.total = 0  # bytes received
        self.cut = 0  # bytes dropped, known once closed
        self._tail = bytearray()
        self._file: BinaryIO | None = open(path, "wb")  # noqa: SIM115 - closed by close()

    def write(self, data: bytes) -> None:
        """Keep ``data`` in the head while there is room, in the tail after that."""
        if self._file is None:
            raise ValueError(f"{self.path} is closed")
        self.total += len(data)
        room = self.head_limit - self.written
        if room > 0:
            self._file.write(data[:room])
            self.written += min(room, len(data))
            data = data[room:]
        if data and self.tail_limit > 0:
            self._tail += data
            if len(self._tail) > 2 * self.tail_limit:  # trim now and then: amortized O(1)
                del self._tail[: len(self._tail) - self.tail_limit]

    def close(self) -> None:
        """Write the marker (if anything was cut) and the tail; idempotent."""
        if self._file is None:
            return
        tail = bytes(self._tail[-self.tail_limit :]) if self.tail_limit else b""
        cut = self.total - self.written - len(tail)
        if cut > 0:
            newline = tail.find(b"\n", 0, _ALIGN)  # start the tail at a line
            if 0 <= newline < len(tail) - 1:
                tail = tail[newline + 1 :]
                cut = self.total - self.written - len(tail)
            self._file.write(cut_marker(cut))
            self.cut = cut
        self._file.write(tail)
        self._file.close()
        self._file = None
        self._tail = bytearray()


def trim_file(path: Path, max_bytes: int) -> int:
    """Cut the middle of an existing file so that at most ``max_bytes`` (plus the marker)
    remain; the number of bytes cut (0 if it was small enough)."""
    size = path.stat().st_size
    if size <= max_bytes:
        return 0
    tmp = path.with_name(f".{path.name}.trim")
    capped = CappedFile(tmp, max_bytes)
    try:
        with open(path, "rb") as src:
            capped.write(src.read(capped.head_limit))
            src.seek(max(capped.head_limit, size - capped.tail_limit - _ALIGN))
            capped.total = src.tell()  # what was skipped counts as cut
            while chunk := src.read(_CHUNK):
                capped.write(chunk)
        capped.close()
        os.replace(tmp, path)
    finally:
        capped.close()
        tmp.unlink(missing_ok=True)
    return capped.cut


class OutputPump:
    """Pipes for the payload's stdout and stderr, read by a thread into capped files.

    ``stdout_fd`` and ``stderr_fd`` are the write ends to give to the child; call
    :meth:`child_started` once it has them, and :meth:`finish` when the payload has ended.
    The same path for both streams shares one file.
    """

    def __init__(self, stdout: Path, stderr: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        out = CappedFile(stdout, max_bytes)
        err = out if stderr.absolute() == stdout.absolute() else CappedFile(stderr, max_bytes)
        self.files = (out, err)
        out_r, self.stdout_fd = os.pipe()
        err_r, self.stderr_fd = os.pipe()
        self._selector = selectors.DefaultSelector()
        self._selector.register(out_r, selectors.EVENT_READ, out)
        self._selector.register(err_r, selectors.EVENT_READ, err)
        self._open = 2
        self.errors: list[str] = []  # write errors (the output is lost from there on)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="payload-output", daemon=True)
        self._thread.start()

    def child_started(self) -> None:
        """Close the pilot's copies of the write ends: EOF comes when the payload's close."""
        for fd in (self.stdout_fd, self.stderr_fd):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.stdout_fd = self.stderr_fd = -1

    def _run(self) -> None:
        while self._open:
            events = self._selector.select(0.2)
            if not events and self._stop.is_set():
                return  # a process that escaped still holds a write end: stop anyway
            for key, _ in events:
                data = os.read(key.fd, _CHUNK)
                if data:
                    try:
                        key.data.write(data)
                    except OSError as exc:  # e.g. a full disk: keep draining the pipe,
                        self.errors.append(str(exc))  # or the payload would block on it
                else:
                    self._selector.unregister(key.fd)
                    os.close(key.fd)
                    self._open -= 1

    def finish(self, timeout: float = 5.0) -> int:
        """Read what is left (at most ``timeout`` seconds more), close the files; the
        number of bytes cut from both streams."""
        self.child_started()
        self._thread.join(timeout)
        self._stop.set()
        self._thread.join()
        for key in list(self._selector.get_map().values()):
            os.close(key.fd)
        self._selector.close()
        cut = 0
        for f in dict.fromkeys(self.files):  # the same file once
            try:
                f.close()
            except OSError as exc:
                self.errors.append(str(exc))
            cut += f.cut
        return cut


def printable_status(line: str, max_length: int = 255) -> str:
    """``line`` as an application status: printable characters only (control characters
    and undecodable bytes dropped, whitespace collapsed), at most ``max_length`` long."""
    kept = []
    for char in line:
        if char.isspace():
            kept.append(" ")
        elif char != "\ufffd" and unicodedata.category(char)[0] != "C":
            kept.append(char)
    text = " ".join("".join(kept).split())
    return text if len(text) <= max_length else text[: max_length - 3] + "..."
