"""Drawing of the Data page: a dataset's preview before extraction, an extraction's summary,
the bias audit's report, and the heads of the workspace with their model cards.

The numbers come from the library (``detector.paths``, ``detector.audit``, ``detector.demo``)
through ``ui.adapters`` and ``ui.analysis``; this module draws them and starts the
extraction job. The page calls the public functions in its order.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
import streamlit as st

from detector.audit import audit_figure, audit_table
from detector.demo import audit_note
from detector.paths import ENV_DATA_ROOT, check_data_path, data_roots
from ui import adapters, charts, resources, tasks, views
from ui.settings import ray_address


def dataset_caption() -> None:
    """What a dataset looks like, and the folders it may come from."""
    st.caption(
        "A folder `ROOT/[split/]CLASS/**/image` (CLASS `real` or a generator name) or a CSV "
        "manifest `path,label[,generator,split,pair_id]`. Allowed folders: "
        + ", ".join(f"`{r}`" for r in data_roots())
        + f" (set `{ENV_DATA_ROOT}` to change)."
    )


def check_dataset(path: str) -> dict:
    """The preview of the dataset at ``path`` (a folder or a manifest), after checking that
    it lies in an allowed folder (``CueLensError`` naming the path when not)."""
    return adapters.dataset_preview(check_data_path(path))


def preview_and_extract(ctx, preview: dict) -> None:
    """The dataset's counts and refused rows, and the button that extracts it."""
    ws = ctx.workspace()
    registry = resources.job_registry()
    scope = str(ws.path)
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


def extract_summary(result: dict) -> None:
    """What an extraction did: counts, speed, assigned splits and the files it refused."""
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
        views.csv_download(
            "Download the error list (CSV)",
            errors,
            "extraction_errors.csv",
        )


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


def audit_report(ctx, stored, current: bool) -> None:
    """The stored bias audit: flagged properties, per-class summary, one property up close."""
    ws = ctx.workspace()
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


def heads(ctx) -> None:
    """The workspace's heads, one model card with its file, and the import of a head file."""
    ws = ctx.workspace()
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
