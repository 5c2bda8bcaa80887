"""Data: what the workspace holds, register and embed a dataset, train heads, model cards,
and the bias audit of the labelled files."""

from __future__ import annotations

import streamlit as st

from ui import adapters, analysis, charts, data_view, resources, tasks, views
from ui.frame import page_context
from ui.job_panel import live_job

ctx = page_context()
ws = ctx.workspace()
registry = resources.job_registry()
scope = str(ws.path)

st.title("Data")
st.caption(
    "Register a dataset by path, embed it with the current backbone, train detector heads on "
    "the embeddings, read their model cards, and check the data for shortcuts a detector "
    "could learn. Long work runs in the background: you can change page and come back."
)


# -- what the workspace holds ----------------------------------------------------------------


def overview() -> None:
    images = adapters.images_table(ws)
    ok = images[images["error"].isna()]
    c = st.columns(6)
    c[0].metric("Labelled images", f"{int(ok['label'].notna().sum()):,}")
    c[1].metric("Real", f"{int((ok['label'] == 0).sum()):,}")
    c[2].metric("Synthetic", f"{int((ok['label'] == 1).sum()):,}")
    c[3].metric("Generators", ok.loc[ok["label"] == 1, "generator"].nunique())
    c[4].metric(
        "Uploads",
        f"{int(ok['label'].isna().sum()):,}",
        help="Unlabelled images "
        "analysed on the Detect page (kept so the same bytes are instant next time).",
    )
    c[5].metric("Failed to decode", f"{int(images['error'].notna().sum()):,}")
    if ok.empty:
        views.empty_state("This workspace is empty: register a dataset below.")
        return
    table = adapters.counts_by_group_and_split(ok)
    st.dataframe(table, width="content")
    st.caption(
        "Images per group (real, or the generator of synthetic images) and split. Uploads "
        "from the Detect page are stored unlabelled and not counted here."
    )


# -- register and extract --------------------------------------------------------------------


def register_and_extract() -> None:
    st.subheader("Register a dataset and extract embeddings")
    data_view.dataset_caption()
    with st.form("register"):
        path = st.text_input("Dataset folder or CSV manifest", key="data_path")
        checked = st.form_submit_button("Check dataset", icon=":material/fact_check:")
    if checked:
        st.session_state.pop("data_preview", None)  # a refused path offers no older dataset
        with views.section_guard():
            st.session_state["data_preview"] = data_view.check_dataset(path)
    preview = st.session_state.get("data_preview")
    if preview:
        data_view.preview_and_extract(ctx, preview)
    _extract_jobs()


def _extract_jobs() -> None:
    jobs = registry.jobs("extract", scope)
    if not jobs:
        return
    live_job(jobs[0], "extract", extra=_extract_result)  # counts in the sidebar change


def _extract_result(job) -> None:
    if not job.running and job.result:
        data_view.extract_summary(job.result)


# -- training --------------------------------------------------------------------------------


def training() -> None:
    st.subheader("Train a detector head")
    if not adapters.training_available():
        views.empty_state("Training is not available in this installation (detector.train).")
        return
    images = adapters.images_table(ws)
    splits = sorted(s for s in images["split"].dropna().unique())
    if not splits:
        views.empty_state("Extract a labelled dataset first: training needs a train split.")
        return
    with st.form("train"):
        c = st.columns([2, 2, 1, 1])
        head_type = c[0].selectbox(
            "Head",
            list(adapters.HEAD_TYPES),
            format_func=adapters.HEAD_TYPES.get,
            help="Linear probe (1024 → 1), de-correlated head (1024 → 8 → 1), or the concept "
            "bottleneck (decides only through named concepts).",
        )
        name = c[1].text_input("Name", value="", placeholder="e.g. probe_synthclic")
        train_split = c[2].selectbox(
            "Train on", splits, index=splits.index("train") if "train" in splits else 0
        )
        val_options = ["(none)", *splits]
        val_split = c[3].selectbox(
            "Validate on",
            val_options,
            index=val_options.index("val") if "val" in val_options else 0,
            help="Early stopping and the decision threshold are chosen on this split.",
        )
        go = st.form_submit_button("Train", type="primary", icon=":material/model_training:")
    if go:
        options = {
            "head_type": head_type,
            "name": tasks.safe_name(name or f"{head_type}_{train_split}"),
            "train_split": train_split,
            "val_split": None if val_split == "(none)" else val_split,
        }
        registry.start(
            "train",
            f"Training {options['name']} ({adapters.HEAD_TYPES[head_type]})",
            (scope, "train", options["name"]),
            tasks.train_job,
            str(ws.path),
            ctx.backbone_id,
            options,
        )
        st.rerun()
    # training jobs only: the Generators page's transfer matrix also runs as kind "train"
    jobs = [j for j in registry.jobs("train", scope) if j.key[1:2] == ("train",)]
    if jobs:  # when it ends, the new head appears in the sidebar
        live_job(jobs[0], "train", keeps_work=False, extra=_training_curves)


def _training_curves(job) -> None:
    if job.records:
        st.plotly_chart(charts.training_curves(job.records), width="stretch")
        st.caption(
            "Loss per epoch on the training and validation images, drawn as training "
            "runs. Training stops when the validation loss has not improved for a few "
            "epochs; the weights of the best epoch are kept."
        )
    elif job.running:
        st.caption("The curves appear after the first epoch.")


# -- the bias audit --------------------------------------------------------------------------


def bias_audit() -> None:
    st.subheader("Dataset bias audit")
    st.caption(
        "File properties that alone tell real from synthetic images (format, JPEG quality, "
        "width, height, aspect ratio, file size, EXIF, colour mode), read from the headers of "
        "the labelled files. A detector can score well on such data by learning them instead "
        "of traces of generation."
    )
    images = adapters.images_table(ws)
    labelled = images[images["label"].notna() & images["error"].isna()]
    if labelled.empty:
        views.empty_state("No labelled images to audit yet: register a dataset above.")
        return
    fingerprint = analysis.audit_fingerprint(ws, images)
    stored = analysis.stored_audit(ws)
    current = stored is not None and stored.fingerprint == fingerprint
    key = (scope, "audit")
    job = registry.find(key)
    running = job is not None and job.running
    if not current and not running and len(labelled) <= tasks.INLINE_AUDIT_FILES:
        with st.spinner(f"Reading the headers of {len(labelled):,} files…"):
            tasks.run_audit(ws, fingerprint)
        stored, current = analysis.stored_audit(ws), True
    if not current and not running:
        what = "The data changed since the last audit" if stored else "Not audited yet"
        st.info(
            f"{what}: the audit reads the header of each of the {len(labelled):,} labelled "
            f"files (about {max(1, round(len(labelled) * 0.003 / 60))} min on a local disk); "
            "it runs in the background.",
            icon=":material/info:",
        )
        if st.button(f"Audit {len(labelled):,} files", key="audit_go", icon=":material/policy:"):
            registry.start(
                "audit",
                f"Bias audit of {len(labelled):,} files",
                key,
                tasks.audit_job,
                str(ws.path),
                fingerprint,
            )
            st.rerun()
    live_job(job, "audit", keeps_work=False, hide_done=True)
    if stored is not None:
        data_view.audit_report(ctx, stored, current)


# -- heads and model cards -------------------------------------------------------------------


with views.section_guard():
    overview()
st.divider()
with views.section_guard():
    register_and_extract()
st.divider()
with views.section_guard():
    training()
st.divider()
with views.section_guard():
    data_view.heads(ctx)
st.divider()
with views.section_guard():
    bias_audit()
