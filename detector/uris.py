"""Image locations given as URIs (``file:///...``, ``s3://bucket/key``, ``gs://...``).

A dataset listing (``detector.datasets``) may name images by URI instead of by local path.
Such a record keeps its location as the URI string (a ``Path`` would fold ``//``), and its
bytes are read through ``pyarrow.fs.FileSystem.from_uri``, so every filesystem pyarrow knows
(local, S3, GCS, HDFS, Azure where built in) works without further code here. pyarrow is
imported only when a URI is read; it ships with ``requirements-scale.txt``.

A URI that cannot be read is an :class:`~detector.images.ImageDecodeError` naming the URI and
the reason, which the extraction turns into a per-file error like any unreadable local file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from detector.images import ImageDecodeError, read_bytes

URI_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
INSTALL_HINT = "pip install -r requirements-scale.txt"


def is_uri(location: object) -> bool:
    """Whether ``location`` is a URI string (``scheme://...``); ``Path`` objects never are."""
    return isinstance(location, str) and URI_PATTERN.match(location) is not None


def location(text: str) -> str | Path:
    """A stored location back as a record path: the URI string, or a local ``Path``."""
    return text if is_uri(text) else Path(text)


def read_uri(uri: str) -> bytes:
    """All bytes of the object at ``uri``; every failure is an ``ImageDecodeError``."""
    try:
        from pyarrow import fs
    except ImportError:
        raise ImageDecodeError(uri, f"reading URIs needs pyarrow ({INSTALL_HINT})") from None
    try:
        filesystem, path = fs.FileSystem.from_uri(uri)
    except Exception as exc:  # pyarrow raises ArrowInvalid for unknown schemes, and others
        raise ImageDecodeError(uri, f"cannot open URI ({_first_line(exc)})") from None
    try:
        info = filesystem.get_file_info(path)
        if info.type == fs.FileType.NotFound:
            raise ImageDecodeError(uri, "file not found")
        if info.type == fs.FileType.Directory:
            raise ImageDecodeError(uri, "is a directory, not a file")
        with filesystem.open_input_stream(path) as stream:
            data = stream.read()
    except ImageDecodeError:
        raise
    except FileNotFoundError:
        raise ImageDecodeError(uri, "file not found") from None
    except PermissionError:
        raise ImageDecodeError(uri, "permission denied") from None
    except Exception as exc:  # network and service errors of remote filesystems
        raise ImageDecodeError(uri, f"cannot read URI ({_first_line(exc)})") from None
    if not data:
        raise ImageDecodeError(uri, "empty file")
    return bytes(data)


def read_location(path: str | os.PathLike) -> bytes:
    """Bytes of a record's file: through pyarrow for a URI, ``open`` for a local path."""
    return read_uri(path) if is_uri(path) else read_bytes(path)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
