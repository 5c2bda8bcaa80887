"""The frame around every page: context, sidebar (workspace, backbone, detector), notices.

``app.py`` calls :func:`render_frame` once per script run, then runs the page inside
``views.guarded``. The sidebar widgets live here, in the entry point's run, so their state
survives page changes (Streamlit keeps the state of widgets drawn on every run).
"""

from __future__ import annotations

import threading
from pathlib import Path

import streamlit as st

from ui import adapters, context, resources, views
from ui.context import KEY_BACKBONE, KEY_HEAD, KEY_WORKSPACE, AppContext
from ui.settings import (
    DEMO_SPEC,
    BackboneSpec,
    check_browser_backbone,
    default_backbone_spec,
)

_RUN = threading.local()  # set while app.py runs a page inside the frame


def run_page(page) -> None:
    """Run the navigation's page inside the frame (called by ``app.py``), errors guarded."""
    _RUN.framed = True
    try:
        views.guarded(page.run)
    finally:
        _RUN.framed = False
    _refresh_backbone_status()
    _refresh_counts()


def page_context() -> AppContext:
    """The context for a page: the frame's, or, when the page file runs on its own, a frame
    drawn now.

    A page runs on its own when Streamlit starts a page file directly (the first request of a
    fresh server to a deep link such as ``/data``, while its ``pages/`` folder is still read
    the old way; ``AppTest`` reruns). The page then still gets its sidebar and notices.
    """
    if getattr(_RUN, "framed", False):
        return context.current()
    return render_frame()


def render_frame() -> AppContext:
    """Resolve this run's context and draw the sidebar and the notices at the top.

    The DEMO banner is drawn as soon as demo mode is known, before the demo is prepared."""
    banner = st.empty()
    ctx = context.resolve(on_demo=lambda: views.demo_banner_text(banner))
    with st.sidebar:
        _workspace_panel(ctx)
        st.divider()
        _backbone_panel(ctx)
        st.divider()
        _detector_panel(ctx)
    with banner.container():
        views.demo_banner(ctx)
    views.weights_notice(ctx)
    views.problems(ctx)
    return ctx


# -- workspace -------------------------------------------------------------------------------


def _counts_line(summary: dict) -> str:
    labels = summary.get("by_label", {})
    gens = [g for g in summary.get("by_generator", {}) if g != "real"]
    parts = [f"{summary.get('images', 0):,} images"]
    parts += [f"{labels[k]:,} {k}" for k in ("real", "synthetic", "unlabelled") if labels.get(k)]
    parts.append(f"{len(gens)} generator{'s' if len(gens) != 1 else ''}")
    if summary.get("failed"):
        parts.append(f"{summary['failed']} failed")
    return " · ".join(parts)


def _workspace_panel(ctx: AppContext) -> None:
    st.markdown("**Workspace**")
    ws = ctx.workspace()
    # follows Workspace.version(): re-read after any write (and where outside changes are seen)
    version = ws.version()
    summary = resources.workspace_summary(ws)
    st.code(_short_path(ctx.workspace_path), language=None, wrap_lines=True)
    slot = st.empty()
    _draw_counts(slot, summary, ctx.backbone_id)
    _RUN.counts = (slot, ws, version, ctx.backbone_id)
    cols = st.columns([4, 1])
    with cols[0].popover("Change", icon=":material/folder_open:", width="stretch"):
        path = st.text_input(
            "Workspace folder",
            value=str(ctx.workspace_path),
            key="cl_ws_input",
            help="A folder holding a Cue Lens workspace (created when missing). It must lie "
            "below an allowed data folder or the Cue Lens home.",
        )
        if st.button("Open workspace", key="cl_ws_open", type="primary"):
            _open_workspace(path)
        default = context.default_workspace(ctx)
        recent = [default, *context.recent_workspaces()]
        recent = [
            p for i, p in enumerate(recent) if p != ctx.workspace_path and p not in recent[:i]
        ]
        if recent:
            st.selectbox(
                "Recent workspaces",
                [str(p) for p in recent],
                index=None,
                placeholder="Open a recent workspace",
                format_func=lambda p: (
                    _short_path(Path(p)) + (" (default)" if p == str(default) else "")
                ),
                key="cl_ws_recent",
                on_change=_pick_recent_workspace,
                args=(str(default),),
            )
            pending = st.session_state.pop(KEY_RECENT_PICK, None)
            if pending:
                _open_workspace(pending)
        if st.session_state.get(KEY_WORKSPACE) and st.button("Back to default", key="cl_ws_def"):
            st.session_state.pop(KEY_WORKSPACE, None)
            st.rerun()
        st.caption("Allowed: " + ", ".join(str(r) for r in _workspace_roots()))
    refresh = cols[1].button(
        ":material/refresh:",
        key="cl_refresh",
        help="Re-read the workspace (after changes made from the command line)",
    )
    if refresh:
        resources.bump_generation(ws.path)
        st.rerun()


def _draw_counts(slot, summary: dict, backbone_id: str) -> None:
    with slot.container():
        st.caption(_counts_line(summary))
        embedded = [b for b in summary.get("backbones", []) if b["tap"] == "pooled"]
        if not next((b["embeddings"] for b in embedded if b["backbone"] == backbone_id), 0):
            st.caption(
                f":orange[No embeddings for {backbone_id} yet: extract some on the Data page.]"
            )


def _refresh_counts() -> None:
    """After the page ran: it may have written to the workspace (uploads, extraction), so the
    counts drawn before it are redrawn when the workspace's version moved."""
    held = getattr(_RUN, "counts", None)
    _RUN.counts = None
    if held is None:
        return
    slot, ws, version, backbone_id = held
    try:
        if ws.version() != version:
            _draw_counts(slot, resources.workspace_summary(ws), backbone_id)
    except Exception:  # a closed or vanished workspace: the page has said so already
        pass


def _workspace_roots() -> list[Path]:
    return context.workspace_roots()


KEY_RECENT_PICK = "cl_ws_recent_pick"


def _pick_recent_workspace(default: str) -> None:
    """The recent-workspaces box was changed: open the pick (next run) and clear the box."""
    pick = st.session_state.get("cl_ws_recent")
    st.session_state["cl_ws_recent"] = None
    if not pick:
        return
    if pick == default:
        st.session_state.pop(KEY_WORKSPACE, None)
        st.session_state.pop(KEY_HEAD, None)
    else:
        st.session_state[KEY_RECENT_PICK] = pick


def _open_workspace(path: str) -> None:
    try:
        resolved = context.allowed_workspace(path)
        resources.workspace(resolved)  # opens (or creates) it; errors are readable
    except Exception as exc:
        views.show_error(exc)
        return
    st.session_state[KEY_WORKSPACE] = str(resolved)
    st.session_state.pop(KEY_HEAD, None)  # the new workspace offers its own heads
    context.remember_workspace(resolved)
    st.rerun()


def _short_path(path: Path) -> str:
    home = Path.home()
    try:
        return "~/" + str(path.relative_to(home))
    except ValueError:
        return str(path)


# -- backbone --------------------------------------------------------------------------------


def _backbone_panel(ctx: AppContext) -> None:
    st.markdown("**Backbone**")
    spec = ctx.spec
    try:
        where = resources.warm_backbone(spec, ctx.backbone_id)  # loads in the background
    except Exception as exc:  # e.g. CUDA asked for but absent: say so, keep going
        where = f":red[{exc}]"
    source = "random weights (demo)" if spec.is_demo else _weights_source(spec)
    st.markdown(f"`{spec.model}`  \n{source}")
    slot = st.empty()
    _RUN.backbone_status = (slot, spec, where)
    _draw_backbone_status(slot, spec, where)
    with st.popover("Change", icon=":material/memory:", width="stretch"):
        _backbone_form(ctx)


def _draw_backbone_status(slot, spec: BackboneSpec, where: str) -> bool:
    loaded = resources.backbone_loaded(spec) is not None
    status = ":green[● loaded]" if loaded else ":gray[○ loads on first use]"
    slot.markdown(f"{where} · {status}")
    return loaded


def _refresh_backbone_status() -> None:
    """After the page ran: the backbone may have been loaded by it."""
    held = getattr(_RUN, "backbone_status", None)
    if held is not None:
        _draw_backbone_status(*held)
        _RUN.backbone_status = None


def _weights_source(spec: BackboneSpec) -> str:
    if spec.model.startswith("local-dir:"):
        return "open_clip folder"
    pretrained = spec.pretrained or ""
    if Path(pretrained).expanduser().is_file():
        return f"file {Path(pretrained).name}"
    return f"tag `{pretrained}` (local cache)"


def _backbone_form(ctx: AppContext) -> None:
    st.caption(
        "Any open_clip ViT: a model name with a pretrained tag (`openai`) or a local "
        "checkpoint file, or `local-dir:/folder`. Embeddings and heads are tied to the backbone."
    )
    model = st.text_input("Model", value=ctx.requested.model, key="cl_bb_model")
    weights = st.text_input(
        "Weights (tag or file)", value=ctx.requested.pretrained or "", key="cl_bb_weights"
    )
    c1, c2 = st.columns(2)
    devices = ["auto", "cpu", "cuda", "mps"]
    device = c1.selectbox(
        "Device",
        devices,
        index=devices.index(ctx.requested.device) if ctx.requested.device in devices else 0,
        key="cl_bb_device",
    )
    precisions = ["auto", "bf16", "fp32"]
    precision = c2.selectbox(
        "Precision",
        precisions,
        index=precisions.index(ctx.requested.precision)
        if ctx.requested.precision in precisions
        else 0,
        key="cl_bb_precision",
    )
    draft = st.checkbox(
        "Fast JPEG decoding (reduced scale)",
        value=ctx.requested.draft,
        key="cl_bb_draft",
        help="Decode large JPEGs at reduced DCT scale: faster, but not the paper's pixels, so "
        "embeddings are stored under their own id (@draft). Off: full decoding, as the paper.",
    )
    b1, b2, b3 = st.columns(3)
    if b1.button("Apply", type="primary", key="cl_bb_apply"):
        try:  # a file or folder typed here is read by the server: it must be allowed
            check_browser_backbone(model, weights, _workspace_roots(), default_backbone_spec())
        except Exception as exc:
            views.show_error(exc)
            return
        st.session_state[KEY_BACKBONE] = BackboneSpec(
            model.strip(), weights.strip() or None, device, precision, draft
        )
        st.session_state.pop(KEY_HEAD, None)
        st.rerun()
    if b2.button("Default", key="cl_bb_default", help=default_backbone_spec().label):
        st.session_state.pop(KEY_BACKBONE, None)
        st.session_state.pop(KEY_HEAD, None)
        st.rerun()
    if b3.button("Demo", key="cl_bb_demo", help="tiny-clip with random weights"):
        st.session_state[KEY_BACKBONE] = DEMO_SPEC
        st.session_state.pop(KEY_HEAD, None)
        st.rerun()


# -- detector --------------------------------------------------------------------------------


def _detector_panel(ctx: AppContext) -> None:
    st.markdown("**Detector**")
    usable = [h for h in ctx.heads if h.compatible(ctx.backbone_id) and h.usable]
    others = [h for h in ctx.heads if not h.compatible(ctx.backbone_id)]
    if not usable:
        st.caption(
            f"No detector for {ctx.backbone_id} yet: train one on the Data page "
            "(or import a head file there)."
        )
    else:
        keys = [h.key for h in usable]
        labels = {h.key: h.label for h in usable}
        current = ctx.head_option.key if ctx.head_option else keys[0]
        if st.session_state.get("cl_head_select") not in keys:
            st.session_state["cl_head_select"] = current
        choice = st.selectbox(
            "Detector head",
            keys,
            format_func=labels.get,
            key="cl_head_select",
            label_visibility="collapsed",
        )
        if choice != st.session_state.get(KEY_HEAD):
            st.session_state[KEY_HEAD] = choice
            if ctx.head_option is None or choice != ctx.head_option.key:
                st.rerun()
        option = ctx.head_option
        if option is not None:
            facts = [option.head_type or "head", option.tap or ""]
            if option.training_data:
                facts.append(f"trained on {option.training_data}")
            st.caption(" · ".join(f for f in facts if f))
            card_box = st.popover("Model card", icon=":material/description:", width="stretch")
            with card_box, views.section_guard():
                head = ctx.head()
                views.model_card(adapters.head_card(head, option), key="sidebar_card")
    if others:
        needs = sorted({h.backbone_id for h in others if h.backbone_id})
        st.caption(f"{len(others)} more head(s) need another backbone ({', '.join(needs)}).")
