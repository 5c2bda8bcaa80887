"""SHA-256 of bytes and files: the keys of images, heads and weights files."""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

CHUNK = 1 << 20


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of a byte string (the workspace's image key)."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def file_digest(path: str | os.PathLike, prefix: int | None = None) -> str:
    """``sha256_file``, remembered per file version (path, size, mtime): a large weights or
    head file is read once per process however often it is identified."""
    stat = os.stat(path)
    digest = _remembered(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)
    return digest[:prefix] if prefix else digest


@functools.lru_cache(maxsize=256)
def _remembered(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(path)
