"""ADLER32, the checksum of the file catalog: one running implementation for every transfer."""

from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import BinaryIO

__all__ = ["CHUNK_SIZE", "Adler32", "adler32_of"]

CHUNK_SIZE = 1024 * 1024


class Adler32:
    """A running ADLER32 and byte count, fed chunk by chunk as data moves."""

    __slots__ = ("size", "value")

    def __init__(self) -> None:
        self.value = 1
        self.size = 0

    def update(self, data: bytes) -> None:
        self.value = zlib.adler32(data, self.value)
        self.size += len(data)

    def hexdigest(self) -> str:
        """8 lowercase hex digits, as the catalog stores it."""
        return f"{self.value & 0xFFFFFFFF:08x}"


def adler32_of(source: BinaryIO | Path | str, chunk_size: int = CHUNK_SIZE) -> str:
    """ADLER32 of a binary stream (read to its end) or of a local file."""
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as stream:
            return adler32_of(stream, chunk_size)
    digest = Adler32()
    while chunk := source.read(chunk_size):
        digest.update(chunk)
    return digest.hexdigest()
