"""Generators: how well each generator is caught, how detectors transfer between generators,
and two groups side by side."""

from __future__ import annotations

import streamlit as st

from ui import analysis, cues_view, generators_view, resources, tasks, views
from ui.frame import page_context
from ui.job_panel import live_job

ctx = page_context()
ws = ctx.workspace()
registry = resources.job_registry()

st.title("Generators")
st.caption(
    "Average precision (AP) of each generator's images against the real ones, with 95% "
    "bootstrap intervals; mAP is their mean (pooled AP over all fakes is not mAP and is not "
    "shown as such). Then how a detector trained on one generator finds the others, any two "
    "groups side by side, and how the detector holds up when images are re-compressed, "
    "resized, blurred or cropped."
)


def _setup():
    head = ctx.head()
    if head is None:
        views.empty_state("Choose a detector in the sidebar (or train one on the Data page).")
        return None
    scored = analysis.scored(ws, head, ctx.backbone_id)
    if scored.meta.empty:
        views.empty_state(
            f"No labelled images with embeddings of {ctx.backbone_id} in this workspace: "
            "register and extract a dataset on the Data page."
        )
        return None
    splits = sorted(scored.meta["split"].dropna().unique())
    options = [*splits, "all images"]
    default = options.index("test") if "test" in options else len(options) - 1
    c = st.columns([2, 2, 3])
    split = c[0].selectbox(
        "Evaluate on",
        options,
        index=default,
        key="gen_split",
        help="The test split is the honest choice; the train split flatters any detector.",
    )
    pairing = c[1].radio(
        "Pairing",
        ["shared", "matched"],
        horizontal=True,
        key="gen_pairing",
        help="shared: each generator's fakes against all reals of the split; matched: against "
        "the reals of the same source or pair group only.",
    )
    subset = analysis.split_subset(scored, None if split == "all images" else split)
    c[2].caption(
        f"{int((subset.meta['label'] == 0).sum()):,} real and "
        f"{int((subset.meta['label'] == 1).sum()):,} synthetic images · detector "
        f"{ctx.head_option.name if ctx.head_option else ''}"
    )
    return head, subset, split, pairing, scored


def transfer_section(head) -> None:
    st.subheader("Cross-generator transfer")
    st.caption(
        "One detector of the same type trained on each generator (rows; and one on all), "
        "tested on each generator (columns): mAP on the test split. Low off-diagonal cells are "
        "generators a detector does not transfer to."
    )
    head_type = getattr(head, "head_type", "linear")
    head_type = head_type if head_type in ("linear", "orthogonal") else "linear"
    pairing = st.session_state.get("gen_pairing", "shared")
    key = (str(ws.path), "transfer", ctx.backbone_id, head_type, pairing)
    job = registry.find(key)
    stored = analysis.stored_transfer(ws, ctx.backbone_id, head_type, pairing)
    running = job is not None and job.running
    label = "Recompute" if stored else "Compute the transfer matrix"
    if st.button(label, disabled=running, key="transfer_go", icon=":material/grid_on:"):
        registry.start(
            "train",
            f"Transfer matrix ({head_type} heads)",
            key,
            tasks.transfer_job,
            str(ws.path),
            ctx.backbone_id,
            head_type,
            pairing,
        )
        st.rerun()
    live_job(job, "transfer", keeps_work=False, hide_done=True)
    if not stored:
        if not running:
            views.empty_state(
                "Not computed yet for this backbone and head type: it trains one head per "
                "generator (seconds on cached embeddings)."
            )
        return
    generators_view.transfer_matrix(stored, head_type)


# -- robustness ------------------------------------------------------------------------------


def robustness_section(head, scored, pairing: str) -> None:
    st.subheader("Robustness to image processing")
    st.caption(
        "How much of the detector's AP survives what happens to images on their way to you. "
        "Each test image is perturbed (JPEG re-compression, resizing, blur, centre crop, "
        "noise), embedded again and scored; the perturbed embeddings are kept in the "
        "workspace, so a re-run, or another pairing, only reads them."
    )
    meta = scored.meta
    has_test = bool((meta["split"] == "test").any())
    evaluated = meta[meta["split"] == "test"] if has_test else meta
    n_real, n_fake = int((evaluated["label"] == 0).sum()), int((evaluated["label"] == 1).sum())
    if n_real == 0 or n_fake == 0:
        where = "test split" if has_test else "workspace"
        views.empty_state(
            f"The sweep needs real and synthetic images, and the {where} has {n_real} real and "
            f"{n_fake} synthetic ones: extract a dataset with both on the Data page."
        )
        return
    name = analysis.sweep_head_name(head)
    key = (str(ws.path), "robustness", name, ctx.backbone_id)
    job = registry.find(key)
    running = job is not None and job.running
    reports = analysis.stored_sweeps(ws, head, ctx.backbone_id)
    report, exact = generators_view.pick_sweep(reports, "test" if has_test else None, pairing)

    options, default = generators_view.perturbation_choices(report)
    left, right = st.columns([5, 1], vertical_alignment="bottom")
    chosen = left.multiselect(
        "Perturbations",
        options,
        default=default,
        key="rob_perturbations",
        accept_new_options=True,
        help="FAMILY:STRENGTH: jpeg:QUALITY, resize:SCALE, blur:SIGMA (pixels), crop:FRACTION "
        "(centre, of each side), noise:SIGMA (0..255); chain with '+', e.g. jpeg:75+resize:0.5.",
    )
    go = right.button(
        "Re-run" if exact else "Run the sweep",
        type="secondary" if exact else "primary",
        disabled=running or not chosen,
        key="rob_go",
        icon=":material/play_arrow:",
        width="stretch",
    )
    st.caption(
        f"{len(evaluated):,} {'test' if has_test else 'labelled'} images ({n_real:,} real, "
        f"{n_fake:,} synthetic) × {len(chosen)} perturbations · {pairing} pairing · detector "
        f"{name}"
    )
    if not has_test:
        st.caption(
            ":orange[This workspace has no test split: the sweep uses every labelled image, "
            "including those the detector was trained on.]"
        )
    # a mistyped name is a message, before any work
    if go and generators_view.perturbations_ok(chosen):
        backbone = ctx.backbone()
        registry.start(
            "robustness",
            f"Robustness sweep of {name}",
            key,
            tasks.robustness_job,
            str(ws.path),
            head,
            backbone,
            list(chosen),
            pairing,
        )
        st.rerun()
    live_job(job, "robustness", hide_done=True)
    if report is None:
        if not running:
            views.empty_state(
                "No sweep for this detector yet: choose perturbations and run it. Each "
                "perturbation embeds every evaluated image once (about as long as extracting "
                "them); later runs only read the stored embeddings."
            )
        return
    if not exact:
        st.info(
            f"Shown: the last sweep with {report.pairing} pairing on "
            f"{report.split or 'all labelled images'}; run it for the current settings.",
            icon=":material/info:",
        )
    generators_view.sweep_report(report)


setup = None
with views.section_guard():
    setup = _setup()
if setup is not None:
    head, subset, split, pairing, scored = setup
    with views.section_guard():
        generators_view.ap_section(ctx, head, subset, split, pairing)
    st.divider()
    with views.section_guard():
        transfer_section(head)
    st.divider()
    with views.section_guard():
        generators_view.side_by_side(ctx, head, subset)
    st.divider()
    with views.section_guard():
        robustness_section(head, scored, pairing)
    st.divider()
    with views.section_guard():
        cues_view.survival_section(ctx, head, None if split == "all images" else split)
