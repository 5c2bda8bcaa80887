"""What the dashboard loads once and shares: models, heads, workspace tables, the job registry.

Caching rules (the pages never cache anything themselves):

- **Models** (``st.cache_resource``, one per process, shared by every session, read-only):
  a backbone per (model, weights, device, precision); a head per (location, SHA-256 of the
  file). Inference runs under ``torch.inference_mode`` in the library; nothing here mutates
  a model.
- **Small things follow the workspace's version.** ``Workspace.version()`` is a counter in
  the database bumped by every committed write, from any process (one indexed row, a few
  microseconds). The sidebar's counts (``workspace_summary``), the images table of the Data
  page and documents the app keeps in the workspace (robustness sweeps, the bias audit,
  transfer matrices) are keyed by it, so a change from the command line shows on the next
  interaction.
- **Large arrays follow the generation.** Labelled embeddings, scores, concept scores,
  surrogates and reports are keyed by (workspace path, backbone id, head digest,
  *generation*). The generation of a workspace is a process-wide counter bumped when

  - the app itself writes labelled data (an extraction or training job ends, a dataset is
    registered) or the user presses "Refresh" in the sidebar;
  - the frame sees, at the start of a script run, that the version changed *and* that the
    labelled data changed: the counts of real and synthetic images, per generator and per
    split, read from the same ``Workspace.summary()`` the sidebar shows (``_follow``). So a
    ``python -m detector embed`` or ``train`` (splits) from a terminal reloads the arrays on
    the next interaction, while uploads on the Detect page (unlabelled images: the version
    changes, the labelled counts do not) never force a reload: a verdict never waits for one.
    The check runs once per version change, before the page, so an upload's own run pays
    nothing and the next run pays one summary read (about 0.1 s on 20,000 images), which the
    sidebar needs anyway. While data keep changing (an extraction in a terminal), the arrays
    are reloaded at most every ``FOLLOW_INTERVAL`` seconds; during the app's own jobs, only
    when they end.

  Changes the counts cannot see (a second backbone's embeddings of the same images, a label
  edited in place) show after ``EXTERNAL_TTL`` seconds or on "Refresh".
- **Jobs** (extraction, training, the sweep, the audit, the demo) live in one process-wide
  registry.

A ``Workspace`` (one SQLite connection) is opened once per browser session: a session runs
one script at a time, and background jobs open their own.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from detector import backbone as backbone_lib  # a module: tests patch its functions
from detector.catalog import load_head_file
from detector.hashing import file_digest
from detector.identity import BackboneSpec
from detector.released import load_released
from detector.store import Workspace
from ui.jobs import JobRegistry

EXTERNAL_TTL = 600  # seconds before a cached workspace view is re-read from disk anyway
FOLLOW_INTERVAL = 10.0  # seconds between two reloads for labelled data changed from outside
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
        self.seen: dict[str, tuple[int, tuple]] = {}  # path -> (version, labelled stamp)
        self.followed: dict[str, float] = {}  # path -> when an outside change was last followed
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


def labelled_stamp(summary: dict) -> tuple:
    """What the large cached views depend on, as far as ``Workspace.summary()`` tells: counts
    of labelled images by class, synthetic ones by generator, and by split (uploads, which
    are unlabelled and unsplit, leave it unchanged)."""
    labels = summary.get("by_label", {})
    return (
        int(labels.get("real", 0)),
        int(labels.get("synthetic", 0)),
        tuple(sorted((k, v) for k, v in summary.get("by_generator", {}).items() if k != "real")),
        tuple(sorted((k, v) for k, v in summary.get("by_split", {}).items() if k != "none")),
    )


def _own_job_writing(path: str) -> bool:
    """Whether a job of this process is writing labelled data to the workspace now (its end
    bumps the generation anyway)."""
    return any(
        job.kind in ("extract", "train", "register") and job.key and job.key[0] == path
        for job in job_registry().running()
    )


def _follow(path: str, version: int, summary: dict) -> None:
    """Bump the generation when the labelled data changed since the last version seen.

    While the data keep changing (an extraction running), the large arrays are reloaded at
    most every ``FOLLOW_INTERVAL`` seconds, and not at all for the app's own jobs (their end
    bumps the generation): a click during a long extraction does not pay a reload each time.
    A change not acted on stays pending and is picked up by a later run.
    """
    gens = _generations()
    stamp = labelled_stamp(summary)
    now = time.monotonic()
    with gens.lock:
        before = gens.seen.get(path)
        if before is None or before[1] == stamp:
            gens.seen[path] = (version, stamp)
            return
        recent = now - gens.followed.get(path, -math.inf) < FOLLOW_INTERVAL
        if recent or _own_job_writing(path):
            return
        gens.seen[path] = (version, stamp)
        gens.followed[path] = now
    bump_generation(path)


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


def version(ws: Workspace) -> int:
    """``Workspace.version()``: the key of everything small that follows every write."""
    return ws.version()


@st.cache_data(show_spinner=False, max_entries=16)
def _summary(_ws: Workspace, path: str, version: int) -> dict:
    return _ws.summary()


def workspace_summary(ws: Workspace) -> dict:
    """``Workspace.summary()`` (counts for the sidebar), re-read when the version changes.

    Called by the frame once per script run before the page: it is also where changes made
    outside the app are noticed (``_follow``, see the module docstring).
    """
    path, current = str(ws.path), ws.version()
    summary = _summary(ws, path, current)
    _follow(path, current, summary)
    return summary


# -- models ----------------------------------------------------------------------------------


@st.cache_resource(show_spinner=False, ttl=600)
def weights_status(model: str, pretrained: str | None, probe_network: bool) -> tuple[bool, str]:
    """Whether the weights can be had now, and the message to show when they cannot."""
    ok = backbone_lib.weights_available(model, pretrained, probe_network=probe_network)
    if ok:
        return ok, ""
    return ok, backbone_lib.missing_weights_message(
        model, pretrained, backbone_lib.default_cache_dir()
    )


class _Loaded:
    def __init__(self):
        self.specs: dict[BackboneSpec, str] = {}


@st.cache_resource(show_spinner=False)
def _loaded() -> _Loaded:
    return _Loaded()


@st.cache_resource(show_spinner=False, max_entries=3)
def _backbone(
    model: str,
    pretrained: str | None,
    device: str,
    precision: str,
    backbone_id: str,
    draft: bool = False,
):
    return backbone_lib.load_backbone(
        model, pretrained, device=device, precision=precision, draft=draft
    )


def backbone(spec: BackboneSpec, backbone_id: str):
    """The loaded backbone for ``spec`` whose id will be ``backbone_id`` (model + weights, with
    the weights file's hash): loaded on first use, then shared by all sessions."""
    model = _backbone(
        spec.model, spec.pretrained, spec.device, spec.precision, backbone_id, spec.draft
    )
    _loaded().specs[spec] = model.id
    return model


def backbone_loaded(spec: BackboneSpec) -> str | None:
    """The backbone id when ``spec`` is already loaded in this process, else None."""
    return _loaded().specs.get(spec)


class _Warmups:
    def __init__(self):
        self.lock = threading.Lock()
        self.threads: dict[tuple[BackboneSpec, str], threading.Thread] = {}
        self.errors: dict[tuple[BackboneSpec, str], str] = {}
        self.seconds: dict[tuple[BackboneSpec, str], float] = {}


@st.cache_resource(show_spinner=False)
def _warmups() -> _Warmups:
    return _Warmups()


def _warm(spec: BackboneSpec, backbone_id: str, warm: _Warmups) -> None:
    start = time.perf_counter()
    try:
        backbone(spec, backbone_id)  # the same cache the pages use: they wait for this load
    except Exception as exc:  # the page that needs the model loads it again and shows why
        warm.errors[(spec, backbone_id)] = f"{type(exc).__name__}: {exc}"
    warm.seconds[(spec, backbone_id)] = time.perf_counter() - start


def warm_backbone(spec: BackboneSpec, backbone_id: str) -> str:
    """Start loading ``spec`` in a background thread (once per process), so that the first
    upload does not wait for it; returns the device and precision line for the sidebar.

    Called when a page opens (the sidebar's backbone panel). The thread fills the same
    ``st.cache_resource`` entry ``backbone`` reads; a page that needs the model meanwhile
    waits for that one load (Streamlit computes a cached value once per key).
    """
    device = backbone_lib.resolve_device(spec.device)
    key = (spec, backbone_id)
    warm = _warmups()
    with warm.lock:
        if backbone_loaded(spec) is None and key not in warm.threads:
            thread = threading.Thread(
                target=_warm, args=(spec, backbone_id, warm), name="cue-lens-warm-up", daemon=True
            )
            warm.threads[key] = thread
            thread.start()
    loaded = _loaded().specs.get(spec)
    if loaded is not None:
        model = _backbone(spec.model, spec.pretrained, spec.device, spec.precision, backbone_id)
        decision = model.precision_decision
        return f"{device.type} · {decision.summary() if decision else model.precision}"
    precision = backbone_lib.resolve_precision(spec.precision, device, spec.model)
    if precision == "auto":
        precision = "auto (measured on first load)"
    return f"{device.type} · {precision}"


# -- heads -----------------------------------------------------------------------------------


def head_digest(path: str | os.PathLike) -> str:
    """The SHA-256 of a file (a head, a weights file): the key its model is cached under."""
    return file_digest(path)


@st.cache_resource(show_spinner=False, max_entries=16)
def _head(path: str, digest: str):
    return load_head_file(path)


def head(path: str | os.PathLike):
    """A saved head loaded once per (file, content hash); read-only."""
    path = str(Path(path).expanduser().resolve())
    return _head(path, head_digest(path))


@st.cache_resource(show_spinner=False, max_entries=16)
def _released_head(name: str):
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
