"""Where Cue Lens keeps its files, and which folders a user may register as data.

Two places matter:

- the Cue Lens home (``CUE_LENS_HOME``, default ``~/.cache/cue-lens``): the demo workspace and
  the default workspace live below it;
- the data roots: folders under which the dashboard's "register a dataset by path" may read.
  A dashboard is a server; without a limit anyone who can reach it could make it read (and
  show thumbnails of) any image on the machine. ``CUE_LENS_DATA_ROOT`` lists the allowed
  folders (``os.pathsep``-separated, e.g. ``/data:/mnt/images``). When it is not set the
  roots are the user's home directory, the directory the server was started from and, when
  present, the project's sample images next to the checkout (``../shared/samples``, so the
  README's examples work as written); a root that is the filesystem root (``/``, ``C:\\``)
  is only honoured when listed explicitly.

Paths are compared after resolving symbolic links and ``..``, so a link inside a data root
that points outside it is refused as well.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from detector.errors import CueLensError

ENV_HOME = "CUE_LENS_HOME"


def assets_dir() -> Path:
    """The folder of Cue Lens's data files (model configs, vocabularies).

    In a source checkout that is the top-level ``assets/``; an installed package
    (``pip install .``) carries the same files as package data in ``detector/assets``.
    """
    installed = resources.files("detector").joinpath("assets")
    if installed.is_dir():
        return Path(str(installed))
    return Path(__file__).resolve().parent.parent / "assets"


ENV_DATA_ROOT = "CUE_LENS_DATA_ROOT"
ENV_WORKSPACE = "CUE_LENS_WORKSPACE"


class PathNotAllowedError(CueLensError):
    """A path lies outside every allowed data root."""


def cue_lens_home() -> Path:
    """The folder for Cue Lens' own files: ``$CUE_LENS_HOME`` or ``~/.cache/cue-lens``."""
    env = os.environ.get(ENV_HOME)
    return Path(env).expanduser() if env else Path("~/.cache/cue-lens").expanduser()


def default_workspace_dir() -> Path:
    """The workspace opened when none is chosen: ``$CUE_LENS_WORKSPACE`` or HOME/workspace."""
    env = os.environ.get(ENV_WORKSPACE)
    return Path(env).expanduser() if env else cue_lens_home() / "workspace"


PROJECT_SAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "samples"


def _is_filesystem_root(path: Path) -> bool:
    return path == Path(path.anchor)


def data_roots(env: str | None = None) -> list[Path]:
    """The resolved folders datasets may be registered from (see the module docstring).

    ``env`` overrides the ``CUE_LENS_DATA_ROOT`` environment variable (for tests).
    """
    value = os.environ.get(ENV_DATA_ROOT) if env is None else env
    if value and value.strip():
        roots = [Path(p).expanduser().resolve() for p in value.split(os.pathsep) if p.strip()]
    else:
        candidates = [Path.home(), Path.cwd()]
        if PROJECT_SAMPLES.is_dir():
            candidates.append(PROJECT_SAMPLES)
        roots = [p.resolve() for p in candidates if not _is_filesystem_root(p.resolve())]
    unique: list[Path] = []
    for root in roots:
        if root not in unique:
            unique.append(root)
    return unique


def is_within_roots(path: str | os.PathLike, roots: list[Path] | None = None) -> bool:
    """Whether ``path`` (after resolving links and ``..``) lies inside one of ``roots``."""
    resolved = Path(path).expanduser().resolve()
    return any(resolved.is_relative_to(root) for root in (roots or data_roots()))


def check_data_path(path: str | os.PathLike, roots: list[Path] | None = None) -> Path:
    """The resolved ``path`` when it exists inside a data root; raises a readable error if not.

    Raises ``PathNotAllowedError`` for a path outside every root (whether or not it exists,
    so the answer says nothing about files outside) and ``CueLensError`` for a path inside a
    root that does not exist.
    """
    text = str(path).strip()
    if not text:
        raise CueLensError("no path given: type the folder or CSV manifest to register")
    roots = data_roots() if roots is None else roots
    resolved = Path(text).expanduser().resolve()
    if not roots or not any(resolved.is_relative_to(root) for root in roots):
        allowed = ", ".join(str(r) for r in roots) or "none"
        folder = resolved.parent if resolved.suffix else resolved  # no look at the disk
        raise PathNotAllowedError(
            f"{text}: outside the allowed data folders ({allowed}). Move the data below one of "
            f"them, or restart the app with this folder allowed: "
            f"`{ENV_DATA_ROOT}={folder} make run` (several folders separated by "
            f"'{os.pathsep}'; the variable replaces the defaults)."
        )
    if not resolved.exists():
        raise CueLensError(f"{text}: no such file or folder")
    return resolved
