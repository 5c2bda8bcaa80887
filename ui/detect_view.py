"""Drawing of the Detect page: the upload limits, the table of a drop, and one image's
verdict, concept attribution, provenance and nearest images.

Every number comes from ``ui.analysis`` (the library's analysis of uploaded bytes); this
module draws it. The page calls :func:`take`, :func:`analyse`, :func:`dropped_table` and
:func:`show`.
"""

from __future__ import annotations

import hashlib

import pandas as pd
import streamlit as st

from concepts.attribution import surrogate_caption
from detector.inference import (
    INCONCLUSIVE,
    LIKELY_REAL,
    LIKELY_SYNTHETIC,
    TOO_SMALL,
    head_threshold,
    verdict_edges,
)
from ui import analysis, charts, provenance_view, settings, views
from ui.adapters import head_key
from ui.uploads import dropped_files

VERDICT_STYLE = {
    LIKELY_REAL: (":blue", ":material/photo_camera:"),
    INCONCLUSIVE: (":gray", ":material/help:"),
    LIKELY_SYNTHETIC: (":orange", ":material/auto_awesome:"),
}


def take(files) -> tuple[list[tuple[str, bytes]], list[bool]]:
    """The uploads within the per-drop limits (a message says what was left out), and for
    each upload whether it was taken."""
    items, total, skipped, taken = [], 0, [], []
    cap = settings.max_upload_total_mb() * 1024 * 1024
    for f in files:
        size = f.size
        if len(items) >= settings.max_upload_files() or total + size > cap:
            skipped.append(f.name)
            taken.append(False)
            continue
        items.append((f.name, f.getvalue()))
        taken.append(True)
        total += size
    if skipped:
        st.warning(
            f"{len(skipped)} file(s) left out to stay within {settings.max_upload_files()} files "
            f"and {settings.max_upload_total_mb()} MB per drop: {', '.join(skipped[:5])}"
            + ("…" if len(skipped) > 5 else "")
        )
    return items, taken


def dropped_table(where, files, taken: list[bool], results: list[analysis.ImageResult]) -> None:
    """Into the container ``where`` (under the uploader): every dropped file with its full
    name, size and status."""
    rows = [(f.name, f.size, t) for f, t in zip(files, taken, strict=True)]
    title = f"Dropped files ({len(rows)}): full names and status"
    with where, st.expander(title, expanded=True):
        st.table(dropped_files(rows, results), hide_index=True)


def analyse(ctx, items: list[tuple[str, bytes]], head) -> list[analysis.ImageResult]:
    """Results per upload; bytes analysed before in this session come back at once."""
    memo = st.session_state.setdefault("detect_memo", {})
    hkey = head_key(head) if head is not None else "none"
    keys = [(hashlib.sha256(data).hexdigest(), ctx.backbone_id, hkey) for _, data in items]
    todo = [i for i, k in enumerate(keys) if k not in memo]
    if todo:
        label = f"Analysing {len(todo)} image(s)…" if len(todo) > 1 else "Analysing…"
        with st.spinner(label):
            fresh = analysis.analyse(ctx, [items[i] for i in todo], head)
        for i, res in zip(todo, fresh, strict=True):
            memo[keys[i]] = res
    out = []
    for (name, _), k in zip(items, keys, strict=True):
        res = memo[k]
        if res.name != name:  # same bytes under another name
            res = analysis.ImageResult(**{**res.__dict__, "name": name})
        out.append(res)
    return out


def _verdict_block(res: analysis.ImageResult, head) -> None:
    if res.error:
        st.error(f"{res.name}: {res.error}", icon=":material/broken_image:")
        return
    if res.probability is None:
        st.info("No detector selected: choose or train one (sidebar, Data page).")
        return
    threshold = head_threshold(head)
    low, high = verdict_edges(threshold)
    colour, icon = VERDICT_STYLE.get(res.verdict, (":gray", ":material/help:"))
    st.markdown(f"### {colour}[{icon} {res.verdict.capitalize()}]")
    if res.warning:
        st.warning(res.warning, icon=":material/photo_size_select_small:")
    st.markdown(
        f"P(synthetic) **{res.probability:.3f}** · logit {res.logit:+.2f}"
        + (" · seen before (from the workspace)" if res.cached else "")
    )
    st.plotly_chart(
        charts.verdict_strip(res.probability, low, high, threshold),
        width="stretch",
        config={"displayModeBar": False},
        key=f"strip_{res.hash}",
    )
    rule = (getattr(head, "card_", None) or {}).get("threshold_rule") or "threshold"
    st.caption(
        f"Bands: likely real below {low:.2f}, likely synthetic above {high:.2f}, inconclusive "
        f"between; dashed line: the head's threshold {threshold:.2f} ({rule})."
    )


def _provenance(md: dict) -> None:
    if not md:
        st.caption("No metadata could be read.")
        return

    def yes_no(v):
        return "yes" if v else "no"

    camera = " ".join(x for x in (md.get("camera_make"), md.get("camera_model")) if x)
    rows = [
        ("Camera", camera or "—"),
        ("Software", md.get("software") or "—"),
        ("Taken", md.get("datetime_original") or "—"),
        ("EXIF present", yes_no(md.get("exif_present"))),
        ("C2PA / JUMBF manifest", yes_no(md.get("c2pa_present"))),
        ("Format", f"{md.get('format')} · {md.get('width')}×{md.get('height')} px"),
        ("JPEG quality (estimate)", md.get("jpeg_quality") or "—"),
        ("File size", f"{md.get('file_size', 0) / 1024:,.1f} kB"),
    ]
    table = pd.DataFrame(rows, columns=["Provenance", "Value"])
    table["Value"] = table["Value"].astype(str)
    st.dataframe(table, hide_index=True, width="stretch")
    st.caption(
        "Metadata can be stripped or forged: its absence is common in real photos shared "
        "online and its presence proves nothing alone."
    )


def _attribution(ctx, res: analysis.ImageResult, head) -> None:
    if res.attribution_error:
        st.info(f"No concept explanation: {res.attribution_error}", icon=":material/info:")
        return
    attr = res.attribution
    if attr is None:
        return
    table = attr.table.copy()
    poles = analysis.concept_poles(table["concept"])
    table["label"] = [charts.pole_pair_label(c, poles.get(c)) for c in table["concept"]]
    table["leans"] = [analysis.leaning_pole(row, poles) for _, row in table.iterrows()]
    st.plotly_chart(
        charts.attribution_bar(table, residual=attr.residual, fidelity=attr.fidelity, top_k=6),
        width="stretch",
        key=f"attr_{res.hash}",
    )
    if attr.method == "exact":
        how = "The concept bottleneck decides only through these concepts: fidelity 1."
    else:
        fid = "n/a" if pd.isna(attr.fidelity) else f"{attr.fidelity:.1%}"
        source = surrogate_caption(attr.source)
        how = (
            f"Explained by a sparse surrogate on concept scores: it accounts for {fid} of the "
            f"detector's logit variance on held-out reference images; the grey bar is what it "
            f"leaves unexplained for this image. Bars are relative to the average reference "
            f"image (baseline {attr.baseline:+.2f})."
            + (f" Explanation: {source}; uploads never change it." if source else "")
        )
    st.caption(
        how + " Each bar names a concept's two poles (this ↔ that); hover to see which one "
        "this image leans towards."
    )
    if attr.method != "exact" and st.button(
        "Refit the explanation",
        key=f"refit_{res.hash}",
        icon=":material/refresh:",
        help="Fit the concept surrogate again on the reference set as it is now (the labelled "
        "images); its version goes up and every image's explanation changes with it.",
    ):
        with st.spinner("Refitting the concept surrogate…"):
            analysis.refit_surrogate(ctx, head)
        st.session_state.pop("detect_memo", None)
        st.rerun()


def _neighbours(res: analysis.ImageResult) -> None:
    nb = res.neighbours
    st.markdown("**Nearest images in the workspace**")
    if nb is None or nb.empty:
        st.caption("The workspace has no labelled images with embeddings of this backbone.")
        return
    cols = st.columns(analysis.NEIGHBOURS)
    for i, row in nb.iterrows():
        with cols[i % analysis.NEIGHBOURS]:
            thumb = analysis.file_thumbnail(row["path"])
            if thumb is not None:
                st.image(thumb, width="stretch")
            group = row["group"]
            colour = ":blue" if group == "real" else ":orange"
            st.caption(f"{colour}[{group}] · cos {row['similarity']:.2f}  \n{row['split'] or ''}")
    st.caption("Cosine similarity in the detector's feature space; labels are the workspace's.")


def _detail(ctx, res: analysis.ImageResult, head) -> None:
    left, right = st.columns([2, 3], gap="large")
    with left:
        if res.thumbnail is not None:
            st.image(res.thumbnail, caption=res.name, width="stretch")
        else:
            st.caption(res.name)
        _provenance(res.metadata)
        provenance_view.details(res.provenance)
    with right:
        _verdict_block(res, head)
        provenance_view.summary(res.provenance, res.verdict)
        if not res.error:
            _attribution(ctx, res, head)
    if not res.error:
        _neighbours(res)


def _table(ctx, results: list[analysis.ImageResult], head) -> None:
    table = analysis.results_table(results)
    counts = table["verdict"].value_counts()
    shown = [
        ("Images", len(table)),
        ("Likely synthetic", int(counts.get(LIKELY_SYNTHETIC, 0))),
        ("Inconclusive", int(counts.get(INCONCLUSIVE, 0))),
        ("Likely real", int(counts.get(LIKELY_REAL, 0))),
        ("Failed", int(counts.get("failed", 0))),
    ]
    if counts.get(TOO_SMALL, 0):
        shown.append(("Too small", int(counts.get(TOO_SMALL, 0))))
    for col, (label, value) in zip(st.columns(len(shown)), shown, strict=True):
        col.metric(label, value)
    st.dataframe(
        table.drop(columns=["sha256"]),
        hide_index=True,
        width="stretch",
        column_config={
            "thumbnail": st.column_config.ImageColumn("", width="small"),
            "file": st.column_config.TextColumn("file", width="large"),
            "verdict": st.column_config.TextColumn("verdict", width="medium"),
            "reason": st.column_config.TextColumn(
                "reason", width="medium", help="Why an image failed or got no verdict"
            ),
            "p_synthetic": st.column_config.ProgressColumn(
                "P(synthetic)", min_value=0.0, max_value=1.0, format="%.3f"
            ),
            "fidelity": st.column_config.NumberColumn("fidelity", format="%.2f"),
            "width": st.column_config.NumberColumn("width", format="%d"),
            "height": st.column_config.NumberColumn("height", format="%d"),
            "kB": st.column_config.NumberColumn("kB", format="%.1f"),
            "exif": st.column_config.CheckboxColumn("EXIF"),
            "c2pa": st.column_config.CheckboxColumn("C2PA"),
            "seen before": st.column_config.CheckboxColumn("seen before"),
        },
    )
    export = analysis.with_context(
        table.drop(columns=["thumbnail"]), analysis.export_context(ctx, head)
    )
    views.csv_download(
        "Download results (CSV)",
        export,
        "cue_lens_results.csv",
        help="One row per image, with the backbone, detector (name, type, fingerprint), "
        "threshold and DEMO flag on every row.",
    )


def inspect_order(results: list[analysis.ImageResult]) -> list[int]:
    """Indexes of ``results`` for the inspector: scored images by P(synthetic), highest first,
    then the rest (failed or unscored) in upload order."""
    scored = [i for i, r in enumerate(results) if r.probability is not None and not r.error]
    rest = [i for i in range(len(results)) if i not in set(scored)]
    return sorted(scored, key=lambda i: -results[i].probability) + rest


def show(ctx, results: list[analysis.ImageResult], head) -> None:
    """One image in detail, or a drop's table, then its images one at a time."""
    if len(results) == 1:
        _detail(ctx, results[0], head)
        return
    _table(ctx, results, head)
    st.divider()
    names = [f"{i + 1}. {r.name}" for i, r in enumerate(results)]
    order = inspect_order(results)
    options = [names[i] for i in order]
    # a new drop starts at its top-scoring image, not at what was picked in the last one
    drop = hashlib.sha256("|".join(f"{r.name}:{r.hash}" for r in results).encode()).hexdigest()
    if st.session_state.get("detect_pick_drop") != drop:
        st.session_state["detect_pick_drop"] = drop
        st.session_state["detect_pick"] = options[0]
    pick = st.selectbox("Inspect one image (most synthetic first)", options, key="detect_pick")
    _detail(ctx, results[names.index(pick)], head)
