"""The state every page reads: which workspace, backbone and detector are in use, and why.

``resolve()`` is called once per script run by the frame (``app.py``) before the page runs;
pages call ``current()``. The user's choices live in ``st.session_state`` under the keys
below, set by the sidebar, so they survive page changes.

Demo mode: when the requested backbone's weights cannot be had (docs/architecture.md,
"Offline demo"), the context switches to ``tiny-clip`` and the demo workspace (built once per
process by a background job) and records the reason, which the frame shows at the top of
every page.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import streamlit as st

from detector.backbone import DEFAULT_MODEL, backbone_id_for
from detector.catalog import HeadEntry
from detector.paths import default_workspace_dir
from ui import adapters, resources
from ui.settings import DEMO_SPEC, BackboneSpec, default_backbone_spec, offline

KEY_BACKBONE = "cl_backbone_request"  # BackboneSpec chosen in the sidebar (None: default)
KEY_WORKSPACE = "cl_workspace_path"  # str chosen in the sidebar (None: the mode's default)
KEY_HEAD = "cl_head_key"  # HeadEntry.key chosen in the sidebar
_CTX = "cl_context"
_URL_READ = "cl_url_read"  # the session has taken its workspace and head from the URL
URL_WORKSPACE, URL_HEAD = "workspace", "head"  # query parameters: a reload keeps the view
RECENT_FILE = "recent_workspaces.json"  # in the Cue Lens home
RECENT_MAX = 8


@dataclass
class AppContext:
    """Everything a page needs to know about the current session's set-up."""

    requested: BackboneSpec
    spec: BackboneSpec
    backbone_id: str
    demo: bool
    auto_demo: bool
    weights_message: str
    workspace_path: Path
    demo_info: object | None = None
    heads: list[HeadEntry] = field(default_factory=list)
    head_option: HeadEntry | None = None
    problems: list[str] = field(default_factory=list)

    def workspace(self):
        """This session's open workspace."""
        return resources.workspace(self.workspace_path)

    def backbone(self):
        """The loaded backbone (loads on first use; a spinner shows while it loads)."""
        if resources.backbone_loaded(self.spec) is None:
            with st.spinner(f"Loading {self.spec.label} (once per server process)…"):
                return resources.backbone(self.spec, self.backbone_id)
        return resources.backbone(self.spec, self.backbone_id)

    def head(self):
        """The selected detector head (loaded once per file hash), or None."""
        if self.head_option is None:
            return None
        return adapters.load_head_option(self.head_option)


def expected_backbone_id(spec: BackboneSpec) -> str:
    """The id ``load_backbone`` will give ``spec``, without loading it: the library's rule,
    ``detector.backbone.backbone_id_for`` (a weights file is hashed once per file version)."""
    return backbone_id_for(spec.model, spec.pretrained, draft=spec.draft)


def _ensure_demo_job(job, home: str | None):
    from detector.demo import ensure_demo

    return ensure_demo(home, progress=lambda step, frac: job.update(frac, step))


def demo_info():
    """The demo (built by a background job once per process; waits with a progress bar)."""
    from detector.paths import cue_lens_home

    home = str(cue_lens_home())
    registry = resources.job_registry()
    job = registry.start(
        "demo",
        "Preparing the offline demo",
        (home, "demo"),
        _ensure_demo_job,
        home,
        reuse_finished=True,
    )
    if job.running:
        bar = st.progress(0.0, text="Preparing the offline demo…")
        while job.running:
            bar.progress(job.progress or 0.0, text=f"Preparing the offline demo: {job.message}")
            time.sleep(0.15)
        bar.empty()
    if job.error:
        from detector.demo import DemoError

        raise DemoError(f"the offline demo could not be prepared: {job.error}")
    return job.result


def workspace_roots() -> list[Path]:
    """Where a workspace may be opened from the browser: the data roots and the Cue Lens home."""
    from detector.paths import cue_lens_home, data_roots

    roots = data_roots()
    home = cue_lens_home().expanduser().resolve()
    return roots if home in roots else [*roots, home]


def allowed_workspace(path: str, *, must_exist: bool = False) -> Path:
    """``path`` resolved when a browser may open it as a workspace; a readable error if not.

    A new workspace (``must_exist`` False) needs an allowed, existing parent folder.
    """
    from detector.paths import check_data_path

    resolved = Path(str(path).strip()).expanduser().resolve()
    if resolved.exists() or must_exist:
        check_data_path(resolved, workspace_roots())
    else:
        check_data_path(resolved.parent, workspace_roots())
    return resolved


def default_workspace(ctx) -> Path:
    """The workspace a session opens when none is chosen: the demo's in demo mode, else
    ``detector.paths.default_workspace_dir()``."""
    info = getattr(ctx, "demo_info", None)
    if ctx.demo and info is not None:
        return Path(info.workspace).expanduser().resolve()
    return default_workspace_dir().expanduser().resolve()


def recent_workspaces() -> list[Path]:
    """Workspaces opened from the dashboard before, newest first (those still there)."""
    import json

    from detector.paths import cue_lens_home

    try:
        names = json.loads((cue_lens_home() / RECENT_FILE).read_text())
    except (OSError, ValueError):
        return []
    out = []
    for name in names if isinstance(names, list) else []:
        p = Path(str(name))
        if p.is_dir() and p not in out:
            out.append(p)
    return out[:RECENT_MAX]


def remember_workspace(path: Path) -> None:
    """Put ``path`` first in the recent workspaces (kept in the Cue Lens home)."""
    import json

    from detector.paths import cue_lens_home

    names = [str(path), *(str(p) for p in recent_workspaces() if p != path)][:RECENT_MAX]
    target = cue_lens_home() / RECENT_FILE
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps(names, indent=1))
        tmp.replace(target)
    except OSError:  # a read-only home: the list is a convenience
        pass


def _read_url(problems: list[str]) -> None:
    """On a session's first run, take the workspace and head from the URL (a reload or a
    shared link); a workspace outside the allowed folders is refused with a message."""
    if st.session_state.get(_URL_READ):
        return
    st.session_state[_URL_READ] = True
    params = st.query_params
    wanted = params.get(URL_WORKSPACE)
    if wanted and not st.session_state.get(KEY_WORKSPACE):
        try:
            st.session_state[KEY_WORKSPACE] = str(allowed_workspace(wanted, must_exist=True))
        except Exception as exc:
            problems.append(f"The link's workspace was not opened: {exc}")
    head = params.get(URL_HEAD)
    if head and not st.session_state.get(KEY_HEAD):
        st.session_state[KEY_HEAD] = head


def _write_url(ctx: AppContext) -> None:
    """Keep the URL in step with the session's choices (so a reload opens the same view)."""
    want = {
        URL_WORKSPACE: st.session_state.get(KEY_WORKSPACE),
        URL_HEAD: ctx.head_option.key if ctx.head_option else None,
    }
    for name, value in want.items():
        if value and st.query_params.get(name) != value:
            st.query_params[name] = value
        elif not value and name in st.query_params:
            del st.query_params[name]


def resolve(on_demo=None) -> AppContext:
    """Work out this run's context from the session's choices and what is available.

    ``on_demo()`` is called as soon as demo mode is known, before the demo is prepared (the
    frame draws the DEMO banner then, so it is on screen while the progress bar runs).
    """
    problems: list[str] = []
    _read_url(problems)
    requested = st.session_state.get(KEY_BACKBONE) or default_backbone_spec()
    message = ""
    if requested.is_demo:
        spec, auto_demo = DEMO_SPEC, False
    else:
        notice = st.empty()
        if "open_clip" not in sys.modules:  # its first import takes seconds: say so meanwhile
            notice.progress(
                0.3,
                text="Starting Cue Lens: looking for the backbone's weights (first start only)…",
            )
        ok, message = resources.weights_status(
            requested.model, requested.pretrained, probe_network=not offline()
        )
        notice.empty()
        spec, auto_demo = (requested, False) if ok else (DEMO_SPEC, True)
        if not ok and requested.model != DEFAULT_MODEL:
            problems.append(f"{requested.label}: weights not available; using the demo instead.")
    demo = spec.is_demo
    if demo and on_demo is not None:
        on_demo()
    info = demo_info() if demo else None
    chosen = st.session_state.get(KEY_WORKSPACE)
    if chosen:
        ws_path = Path(chosen)
    elif demo and info is not None:
        ws_path = Path(info.workspace)
    else:
        ws_path = default_workspace_dir()
    ctx = AppContext(
        requested=requested,
        spec=spec,
        backbone_id=expected_backbone_id(spec),
        demo=demo,
        auto_demo=auto_demo,
        weights_message=message,
        workspace_path=ws_path.expanduser().resolve(),
        demo_info=info,
        problems=problems,
    )
    ctx.heads = adapters.head_options(ctx.workspace())
    ctx.head_option = _pick_head(ctx)
    _write_url(ctx)
    st.session_state[_CTX] = ctx
    return ctx


def _pick_head(ctx: AppContext) -> HeadEntry | None:
    usable = [h for h in ctx.heads if h.compatible(ctx.backbone_id) and h.usable]
    by_key = {h.key: h for h in usable}
    chosen = st.session_state.get(KEY_HEAD)
    if chosen in by_key:
        return by_key[chosen]
    if ctx.demo and ctx.demo_info is not None and getattr(ctx.demo_info, "head_path", None):
        demo_path = str(Path(ctx.demo_info.head_path).resolve())
        for h in usable:
            if os.path.realpath(h.location) == demo_path:
                return h
    for h in usable:
        if h.kind == "released" and h.note == "default":
            return h
    return usable[0] if usable else None


def current() -> AppContext:
    """The context resolved by the frame for this run."""
    ctx = st.session_state.get(_CTX)
    if ctx is None:  # a page run on its own (tests): resolve here
        ctx = resolve()
    return ctx
