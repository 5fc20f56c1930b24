"""SHA-256 of files, read a block at a time (a file is never held whole in memory)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import BinaryIO

BLOCK_BYTES = 1 << 20


def sha256_of(fh: BinaryIO) -> tuple[str, int]:
    """The sha256 (hex) and size of what is left to read in the open binary file ``fh``."""
    digest = hashlib.sha256()
    size = 0
    for block in iter(lambda: fh.read(BLOCK_BYTES), b""):
        digest.update(block)
        size += len(block)
    return digest.hexdigest(), size


def sha256_file(path: str | Path) -> str:
    """The sha256 (hex) of the file at ``path``."""
    with open(path, "rb") as fh:
        return sha256_of(fh)[0]
