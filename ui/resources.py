"""What the dashboard loads once and shares: models, heads, workspace tables, the job registry.

Caching rules (the pages never cache anything themselves):

- **Models** (``st.cache_resource``, one per process, shared by every session, read-only):
  a backbone per (model, weights, device, precision); a head per (location, SHA-256 of the
  file). Inference runs under ``torch.inference_mode`` in the library; nothing here mutates
  a model.
- **Workspace data** (``st.cache_resource`` for large read-only arrays, ``st.cache_data`` for
  small tables) is keyed by (workspace path, backbone id, head digest, *generation*). The
  generation of a workspace is a counter bumped when the app itself writes labelled data
  (an extraction or training job ends, a dataset is registered) or when the user presses
  "Refresh" in the sidebar; changes made from outside (the CLI) show after at most
  ``EXTERNAL_TTL`` seconds. Uploads on the Detect page do not bump it: they add unlabelled
  images that the workspace views leave out, so a verdict never waits for a reload.
- **Jobs** (extraction, training, the demo) live in one process-wide registry.

A ``Workspace`` (one SQLite connection) is opened once per browser session: a session runs
one script at a time, and background jobs open their own.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from detector.store import Workspace
from ui.jobs import JobRegistry
from ui.settings import BackboneSpec

EXTERNAL_TTL = 600  # seconds before a cached workspace view is re-read from disk anyway
_WS_KEY = "_cue_lens_workspace"


# -- jobs and generations ----------------------------------------------------------------------


@st.cache_resource(show_spinner=False)
def job_registry() -> JobRegistry:
    """The process-wide registry of background jobs."""
    registry = JobRegistry()
    registry.listeners.append(_bump_on_job_end)
    return registry


class _Generations:
    def __init__(self):
        self.values: dict[str, int] = {}
        self.lock = threading.Lock()


@st.cache_resource(show_spinner=False)
def _generations() -> _Generations:
    return _Generations()


def generation(workspace_path: str | os.PathLike) -> int:
    """The current generation of a workspace (see module docstring)."""
    return _generations().values.get(str(workspace_path), 0)


def bump_generation(workspace_path: str | os.PathLike) -> None:
    """Mark a workspace as changed: its cached views are rebuilt on next use."""
    gens = _generations()
    with gens.lock:
        key = str(workspace_path)
        gens.values[key] = gens.values.get(key, 0) + 1


def _bump_on_job_end(job) -> None:
    if job.kind in ("extract", "train", "register") and job.key:
        bump_generation(job.key[0])


# -- the workspace of this session -------------------------------------------------------------


def workspace(path: str | os.PathLike) -> Workspace:
    """This session's open ``Workspace`` at ``path`` (reopened when the path changes)."""
    path = str(Path(path).expanduser().resolve())
    held = st.session_state.get(_WS_KEY)
    if held is not None and held[0] == path:
        return held[1]
    if held is not None:
        with contextlib.suppress(Exception):  # a stale connection must not break the page
            held[1].close()
    ws = Workspace(path)
    st.session_state[_WS_KEY] = (path, ws)
    return ws


def note_uploads(workspace_path: str | os.PathLike) -> None:
    """Count that new uploads were stored (only the sidebar's counts depend on them)."""
    gens = _generations()
    with gens.lock:
        key = "uploads:" + str(workspace_path)
        gens.values[key] = gens.values.get(key, 0) + 1


def uploads_seen(workspace_path: str | os.PathLike) -> int:
    return _generations().values.get("uploads:" + str(workspace_path), 0)


@st.cache_data(show_spinner=False, ttl=60)
def workspace_summary(_ws: Workspace, path: str, gen: int, uploads: int = 0) -> dict:
    """``Workspace.summary()`` (counts for the sidebar), cached per generation for 60 s."""
    return _ws.summary()


# -- models ----------------------------------------------------------------------------------


@st.cache_resource(show_spinner=False, ttl=600)
def weights_status(model: str, pretrained: str | None, probe_network: bool) -> tuple[bool, str]:
    """Whether the weights can be had now, and the message to show when they cannot."""
    from detector.backbone import default_cache_dir, missing_weights_message, weights_available

    ok = weights_available(model, pretrained, probe_network=probe_network)
    return ok, "" if ok else missing_weights_message(model, pretrained, default_cache_dir())


class _Loaded:
    def __init__(self):
        self.specs: dict[BackboneSpec, str] = {}


@st.cache_resource(show_spinner=False)
def _loaded() -> _Loaded:
    return _Loaded()


@st.cache_resource(show_spinner=False, max_entries=3)
def _backbone(model: str, pretrained: str | None, device: str, precision: str, backbone_id: str):
    from detector.backbone import load_backbone

    return load_backbone(model, pretrained, device=device, precision=precision)


def backbone(spec: BackboneSpec, backbone_id: str):
    """The loaded backbone for ``spec`` whose id will be ``backbone_id`` (model + weights, with
    the weights file's hash): loaded on first use, then shared by all sessions."""
    model = _backbone(spec.model, spec.pretrained, spec.device, spec.precision, backbone_id)
    _loaded().specs[spec] = model.id
    return model


def backbone_loaded(spec: BackboneSpec) -> str | None:
    """The backbone id when ``spec`` is already loaded in this process, else None."""
    return _loaded().specs.get(spec)


# -- heads -----------------------------------------------------------------------------------


@st.cache_data(show_spinner=False, max_entries=256)
def file_digest(path: str, size: int, mtime_ns: int) -> str:
    """SHA-256 of a file, cached by (path, size, mtime) so it is read once per version."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def head_digest(path: str | os.PathLike) -> str:
    """The SHA-256 of a file (a head, a weights file): the key its model is cached under."""
    stat = Path(path).stat()
    return file_digest(str(path), stat.st_size, stat.st_mtime_ns)


@st.cache_resource(show_spinner=False, max_entries=16)
def _head(path: str, digest: str):
    from detector.heads import load_head

    return load_head(path)


def head(path: str | os.PathLike):
    """A saved head loaded once per (file, content hash); read-only."""
    path = str(Path(path).expanduser().resolve())
    return _head(path, head_digest(path))


@st.cache_resource(show_spinner=False, max_entries=16)
def _released_head(name: str):
    from detector.released import load_released

    return load_released(name)


def released_head(name: str):
    """A released head by registry name (fetched once; verified by its pinned SHA-256)."""
    return _released_head(name)


# -- workspace views ------------------------------------------------------------------------


@dataclass
class Embedded:
    """Labelled images of a workspace aligned with one tap's embedding matrix (read-only)."""

    meta: pd.DataFrame
    x: np.ndarray


@st.cache_resource(show_spinner=False, max_entries=6, ttl=EXTERNAL_TTL)
def _embedded(_ws: Workspace, path: str, backbone_id: str, tap: str, gen: int) -> Embedded:
    meta, x = _ws.dataset(backbone_id, tap, labelled_only=True)
    x.setflags(write=False)
    return Embedded(meta=meta, x=x)


def embedded(ws: Workspace, backbone_id: str, tap: str) -> Embedded:
    """Labelled images with their ``tap`` embeddings for ``backbone_id`` (cached)."""
    return _embedded(ws, str(ws.path), backbone_id, tap, generation(ws.path))
