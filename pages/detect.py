"""Detect: drop images, read each verdict, the concepts behind it, provenance and neighbours."""

from __future__ import annotations

import streamlit as st

from ui import detect_view, settings, views
from ui.frame import page_context
from ui.uploads import chips_css

ctx = page_context()

st.title("Detect")
st.caption(
    "Drop one or many images. Each gets P(synthetic) from the selected detector, a verdict in "
    "three bands around its validation threshold, the concepts that moved the score, its "
    "provenance metadata and its nearest images in the workspace."
)


def _on_upload_change() -> None:
    if not st.session_state.get("detect_upload"):  # the user removed the files
        st.session_state.pop("detect_last", None)


limit_mb = settings.max_upload_file_mb()
uploads = st.file_uploader(
    "Images to analyse",
    type=list(settings.UPLOAD_TYPES),
    accept_multiple_files=True,
    help=f"Up to {limit_mb} MB per file, {settings.max_upload_total_mb()} MB and "
    f"{settings.max_upload_files()} files per drop, {settings.max_pixels() / 1e6:.0f} megapixels "
    "per image. The format is read from the content, not the file name.",
    key="detect_upload",
    on_change=_on_upload_change,
)
st.html(chips_css("detect_upload"))  # every row of file chips, none scrolled away
dropped = st.container()  # the drop's full file names and statuses, under the uploader


def main() -> None:
    last = st.session_state.get("detect_last")
    if not uploads and last and last["backbone"] == ctx.backbone_id:
        head = ctx.head()
        if last["head"] == (ctx.head_option.key if ctx.head_option else None):
            c = st.columns([5, 1])
            c[0].caption(
                f"Results of your last drop ({len(last['results'])} image(s)); the upload box "
                "empties when you change page."
            )
            if c[1].button("Clear", key="detect_clear", icon=":material/close:"):
                st.session_state.pop("detect_last", None)
                st.rerun()
            detect_view.show(ctx, last["results"], head)
            return
    if not uploads:
        views.empty_state(
            "Drop JPEG, PNG, WebP, HEIC, AVIF, … images above to analyse them. Nothing leaves this "
            "machine; uploads are stored in the workspace (unlabelled) so the same bytes are "
            "instant next time.",
            icon=":material/upload:",
        )
        return
    head = ctx.head()
    if head is None:
        st.warning(
            "No detector head for this backbone: the images get metadata and neighbours, but no "
            "verdict. Train a head on the Data page or import one.",
            icon=":material/warning:",
        )
    items, taken = detect_view.take(uploads)
    results = detect_view.analyse(ctx, items, head)
    detect_view.dropped_table(dropped, uploads, taken, results)
    st.session_state["detect_last"] = {
        "backbone": ctx.backbone_id,
        "head": ctx.head_option.key if ctx.head_option else None,
        "results": results,
    }
    detect_view.show(ctx, results, head)


main()
