"""Data: what the workspace holds, register and embed a dataset, train heads, model cards,
and the bias audit of the labelled files."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import streamlit as st

from detector.paths import ENV_DATA_ROOT, check_data_path, data_roots
from ui import adapters, analysis, charts, resources, tasks, views
from ui.frame import page_context
from ui.settings import ray_address

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
    st.caption(
        "A folder `ROOT/[split/]CLASS/**/image` (CLASS `real` or a generator name) or a CSV "
        "manifest `path,label[,generator,split,pair_id]`. Allowed folders: "
        + ", ".join(f"`{r}`" for r in data_roots())
        + f" (set `{ENV_DATA_ROOT}` to change)."
    )
    with st.form("register"):
        path = st.text_input("Dataset folder or CSV manifest", key="data_path")
        checked = st.form_submit_button("Check dataset", icon=":material/fact_check:")
    if checked:
        st.session_state.pop("data_preview", None)  # a refused path offers no older dataset
        with views.section_guard():
            resolved = check_data_path(path)
            st.session_state["data_preview"] = adapters.dataset_preview(resolved)
    preview = st.session_state.get("data_preview")
    if preview:
        _preview(preview)
    _extract_jobs()


def _preview(preview: dict) -> None:
    c = st.columns(4)
    c[0].metric("Files", f"{preview['records']:,}")
    c[1].metric("Real", f"{preview['real']:,}")
    c[2].metric("Synthetic", f"{preview['synthetic']:,}")
    c[3].metric("Rows refused", f"{len(preview['errors']):,}")
    st.caption(f"{preview['kind']} `{preview['root']}`")
    if not preview["table"].empty:
        st.dataframe(preview["table"], width="content")
    if preview["errors"]:
        what = "manifest rows" if preview["kind"] == "Manifest" else "paths"
        with st.expander(f"{len(preview['errors'])} {what} refused"):
            st.dataframe(pd.DataFrame(preview["errors"]), hide_index=True, width="stretch")
    running = [j for j in registry.jobs("extract", scope) if j.running]
    label = f"Extract embeddings with {ctx.spec.label}"
    if not preview["records"]:
        st.caption("Nothing to extract: no usable image files in this dataset.")
    disabled = bool(running) or not preview["records"]
    cluster = ray_address()
    on_ray = cluster is not None and st.toggle(
        f"Run on the Ray cluster at `{cluster}`", key="extract_on_ray", help="docs/scale.md"
    )
    if st.button(label, type="primary", disabled=disabled, icon=":material/play_arrow:"):
        backbone = ctx.backbone()
        registry.start(
            "extract",
            f"Embedding {preview['root']}" + (" on Ray" if on_ray else ""),
            (scope, "extract", preview["source"]),
            tasks.extract_job,
            str(ws.path),
            preview["source"],
            backbone,
            cluster if on_ray else None,
            ctx.spec,
        )
        st.rerun()


def _extract_jobs() -> None:
    jobs = registry.jobs("extract", scope)
    if not jobs:
        return
    job = jobs[0]

    @st.fragment(run_every=1.0 if job.running else None)
    def live() -> None:
        views.job_panel(job, key=f"extract_{job.id}")
        if not job.running and job.result:
            _extract_summary(job.result)
        if not job.running and st.session_state.get("extract_seen") != job.id:
            st.session_state["extract_seen"] = job.id
            st.rerun(scope="app")  # counts in the sidebar and above change

    live()


def _extract_summary(result: dict) -> None:
    c = st.columns(5)
    c[0].metric("Files", f"{result['images']:,}")
    c[1].metric("Embedded", f"{result['embedded']:,}")
    c[2].metric("Already there", f"{result['cached']:,}")
    c[3].metric("Failed", f"{result['failed']:,}")
    c[4].metric("Speed", f"{result['images_per_second']:.1f} img/s")
    if result.get("splits") and result["splits"].get("assigned"):
        st.caption(
            f"{result['splits']['assigned']:,} images without a split got the workspace's "
            f"seeded split (seed {result['splits']['seed']})."
        )
    if result["errors"]:
        errors = pd.DataFrame(result["errors"])
        st.markdown(f"**{len(errors):,} files could not be used**")
        st.dataframe(
            errors, hide_index=True, width="stretch", height=min(400, 40 + 35 * len(errors))
        )
        st.download_button(
            "Download the error list (CSV)",
            errors.to_csv(index=False),
            file_name="extraction_errors.csv",
            mime="text/csv",
            icon=":material/download:",
        )


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
    if jobs:
        job = jobs[0]

        @st.fragment(run_every=1.0 if job.running else None)
        def live() -> None:
            views.job_panel(job, key=f"train_{job.id}", keeps_work=False)
            if job.records:
                st.plotly_chart(charts.training_curves(job.records), width="stretch")
                st.caption(
                    "Loss per epoch on the training and validation images, drawn as training "
                    "runs. Training stops when the validation loss has not improved for a few "
                    "epochs; the weights of the best epoch are kept."
                )
            elif job.running:
                st.caption("The curves appear after the first epoch.")
            if not job.running and st.session_state.get("train_seen") != job.id:
                st.session_state["train_seen"] = job.id
                st.rerun(scope="app")  # the new head appears in the sidebar

        live()


# -- the bias audit --------------------------------------------------------------------------

SUMMARY_COLUMNS = {
    "class": "class",
    "generator": "group",
    "n": "images",
    "formats": "formats",
    "jpeg_quality_median": "JPEG quality",
    "width_median": "width (px)",
    "height_median": "height (px)",
    "aspect_ratio_median": "aspect ratio",
    "file_size_median": "file size (KiB)",
    "exif_share": "with EXIF",
    "modes": "colour modes",
}
SHOWN_WARNINGS = 4


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
    if job is not None and (job.running or job.status != "done"):

        @st.fragment(run_every=1.0 if job.running else None)
        def live() -> None:
            views.job_panel(job, key=f"audit_{job.id}", keeps_work=False)
            if not job.running and st.session_state.get("audit_seen") != job.id:
                st.session_state["audit_seen"] = job.id
                st.rerun(scope="app")

        live()
    if stored is not None:
        _audit_report(stored, current)


def _audit_report(stored, current: bool) -> None:
    from detector.audit import audit_figure, audit_table

    report = stored.report
    when = dt.datetime.fromtimestamp(stored.created).strftime("%Y-%m-%d %H:%M")
    counts = report.images["class"].value_counts()
    st.caption(
        f"{'Audit' if current else 'Last audit (before the latest changes)'} of "
        f"{len(report.images):,} files ({int(counts.get('real', 0)):,} real, "
        f"{int(counts.get('synthetic', 0)):,} synthetic), {when}; a property is flagged at "
        f"AUC ≥ {report.threshold:.2f}, in scopes with at least {report.min_per_class} images "
        "of each class."
    )
    warnings = report.warnings
    from detector.demo import audit_note

    note = audit_note(ws) if warnings else None
    if note:
        st.info(note, icon=":material/science:")
    if not warnings:
        st.success(
            "No file property alone separates real from synthetic images here: format, "
            "quality, size, EXIF and colour mode look alike in both classes.",
            icon=":material/verified:",
        )
    for warning in warnings[:SHOWN_WARNINGS]:
        st.warning(warning["message"], icon=":material/warning:")
    if len(warnings) > SHOWN_WARNINGS:
        with st.expander(f"{len(warnings) - SHOWN_WARNINGS} more warnings"):
            for warning in warnings[SHOWN_WARNINGS:]:
                st.warning(warning["message"], icon=":material/warning:")

    st.markdown("**Per class and generator**")
    summary = report.summary.rename(columns=SUMMARY_COLUMNS)[list(SUMMARY_COLUMNS.values())]
    summary["file size (KiB)"] = summary["file size (KiB)"] / 1024
    st.dataframe(
        summary,
        hide_index=True,
        width="stretch",
        column_config={
            "JPEG quality": st.column_config.NumberColumn(format="%.0f"),
            "width (px)": st.column_config.NumberColumn(format="%.0f"),
            "height (px)": st.column_config.NumberColumn(format="%.0f"),
            "aspect ratio": st.column_config.NumberColumn(format="%.2f"),
            "file size (KiB)": st.column_config.NumberColumn(format="%.1f"),
            "with EXIF": st.column_config.NumberColumn(format="percent"),
        },
    )
    table = audit_table(report)
    if table.empty:
        views.empty_state(
            f"No scope has {report.min_per_class} real and {report.min_per_class} synthetic "
            "images: nothing could be tested."
        )
        return
    st.markdown("**Each property alone, as a classifier of real vs synthetic** (flagged first)")
    st.dataframe(
        adapters.audit_display_table(table),
        hide_index=True,
        width="stretch",
        height=min(390, 38 + 35 * len(table)),
        column_config={
            "AUC": st.column_config.ProgressColumn(format="%.2f", min_value=0.5, max_value=1),
            "real": st.column_config.NumberColumn("real images"),
            "synthetic": st.column_config.NumberColumn("synthetic images"),
            "flagged": st.column_config.CheckboxColumn(),
        },
    )
    left, right = st.columns([2, 3], gap="large")
    with left:
        labels = [
            f"{'⚑ ' if row.flagged else ''}{adapters.audit_scope_label(row.scope, row.group)} · "
            f"{str(row.property).replace('_', ' ')} (AUC {row.auc:.2f})"
            for row in table.itertuples(index=False)
        ]
        pick = st.selectbox(
            "Look at one property",
            range(len(table)),
            format_func=labels.__getitem__,
            key="audit_pick",
        )
        row = table.iloc[int(pick or 0)]
        st.caption(adapters.audit_row_text(row))
    with right:
        st.plotly_chart(
            charts.restyle(
                audit_figure(report, row["property"], scope=row["scope"], group=row["group"]),
                height=320,
                title_width=80,
            ),
            width="stretch",
            key="audit_figure",
        )
    if report.errors:
        with st.expander(f"{len(report.errors)} files could not be read"):
            st.dataframe(pd.DataFrame(report.errors), hide_index=True, width="stretch")


# -- heads and model cards -------------------------------------------------------------------


def heads() -> None:
    st.subheader("Detector heads and model cards")
    options = [h for h in ctx.heads if h.kind in ("workspace", "imported")]
    if not options:
        views.empty_state("No heads in this workspace yet: train one above or import a file.")
    else:
        table = pd.DataFrame(
            {
                "name": [h.name for h in options],
                "source": [h.kind for h in options],
                "type": [h.head_type for h in options],
                "backbone": [h.backbone_id for h in options],
                "usable now": [h.compatible(ctx.backbone_id) and h.usable for h in options],
                "note": [h.note for h in options],
            }
        )
        st.dataframe(table, hide_index=True, width="stretch")
        names = [h.key for h in options]
        labels = {h.key: h.label for h in options}
        pick = st.selectbox("Model card of", names, format_func=labels.get, key="card_pick")
        option = next(h for h in options if h.key == pick)
        with views.section_guard():
            head = adapters.load_head_option(option)
            views.model_card(adapters.head_card(head, option), key="data_card")
            with open(option.location, "rb") as f:
                st.download_button(
                    f"Download the head file ({option.name})",
                    f.read(),
                    file_name=option.location.rsplit("/", 1)[-1],
                    icon=":material/download:",
                )
    with st.expander("Import a head file", icon=":material/upload_file:"):
        st.caption(
            "A Cue Lens head (`.safetensors` with its model card) or a released checkpoint of "
            "the paper (`.ckpt`, read weights-only: a file that would run code is refused)."
        )
        up = st.file_uploader("Head file", type=["safetensors", "ckpt", "pt", "pth"], key="imp")
        if up is not None and st.button("Import", key="imp_go"):
            with views.section_guard():
                target = adapters.save_imported_head(ws, up.name, up.getvalue())
                st.success(f"Imported {target.name}; choose it in the sidebar.")
                st.rerun()


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
    heads()
st.divider()
with views.section_guard():
    bias_audit()
