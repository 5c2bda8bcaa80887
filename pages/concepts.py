"""Concepts: what the detector relies on, per class and per generator; one concept up close;
a custom concept typed in and scored live."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from ui import analysis, charts, concepts_view, cues_view, views
from ui.frame import page_context

ctx = page_context()
ws = ctx.workspace()

st.title("Concepts")
st.caption(
    "Concepts are antonym pairs of photographic attributes (e.g. *natural color saturation* vs "
    "*oversaturated neon colors*). An image's score on a concept is the cosine of its CLIP "
    "embedding with the pair's text direction. The detector's reliance on them is measured "
    "exactly for the concept bottleneck and through a surrogate with a stated fidelity for "
    "other heads."
)


label_of = charts.concept_label


def _report():
    head = ctx.head()
    with st.spinner("Scoring the workspace on every concept (once per workspace version)…"):
        return analysis.concept_report(ctx, head), head


def global_view(report, head) -> None:
    st.subheader("What the detector relies on")
    if head is None or report.importance is None:
        views.empty_state("Choose a detector in the sidebar to see its concept weights.")
        return
    c = st.columns(4)
    c[0].metric("Explanation", "exact" if report.method == "exact" else "surrogate")
    fid = report.fidelity
    c[1].metric(
        "Fidelity",
        "n/a" if fid is None or not np.isfinite(fid) else f"{fid:.1%}",
        help="Share of the detector's logit variance the concepts explain on held-out images "
        "(R²). 100% for the concept bottleneck by construction.",
    )
    c[2].metric("Concepts", len(report.concepts))
    c[3].metric("Images", f"{report.n_images:,}")
    if report.surrogate is not None:
        weights = report.surrogate.weights_frame()
        weights = weights.assign(weight=weights["standardized_weight"])
        unit = "logit change per standard deviation of the concept score (surrogate)"
    else:
        weights = pd.DataFrame({"concept": list(head.concept_names_), "weight": head.w_classifier_})
        unit = "weight of the concept in the bottleneck's final layer"
    weights = weights.assign(label=weights["concept"].map(label_of))
    left, right = st.columns(2, gap="large")
    with left:
        st.plotly_chart(
            charts.concept_weights_bar(weights, top_k=15, fidelity=fid),
            width="stretch",
            key="concept_weights",
        )
        st.caption(f"Orange pushes towards synthetic, blue towards real. Unit: {unit}.")
    imp = report.importance
    usage = pd.concat(
        [
            pd.DataFrame({"concept": imp["concept"], "class": "real", "value": imp["mean_real"]}),
            pd.DataFrame(
                {"concept": imp["concept"], "class": "synthetic", "value": imp["mean_synthetic"]}
            ),
        ]
    )
    usage["label"] = usage["concept"].map(label_of)
    with right:
        st.plotly_chart(
            charts.usage_by_class(usage, top_k=12), width="stretch", key="concept_usage"
        )
        note = "Mean contribution to the logit of real and synthetic workspace images."
        if "usage_real" in imp:
            note += " The concept model's gates are open (> 0.5) for these shares of images: "
            top = imp.head(3)
            note += "; ".join(
                f"{label_of(r.concept)} {r.usage_real:.0%} real / {r.usage_synthetic:.0%} synthetic"
                for r in top.itertuples()
            )
        st.caption(note)
    for note in report.notes:
        st.caption(f"Note: {note}")


def generator_matrix(report) -> None:
    st.subheader("Concepts × generators")
    matrix = report.matrix
    if matrix is None or matrix.empty or matrix.shape[1] == 0:
        views.empty_state("The matrix needs real images and at least one named generator.")
        return
    top_n = st.slider("Concepts shown", 5, min(40, len(matrix)), min(15, len(matrix)), 1)
    strength = matrix.abs().max(axis=1).sort_values(ascending=False)
    shown = matrix.loc[strength.index[:top_n]]
    shown.index = [label_of(c) for c in shown.index]
    st.plotly_chart(
        charts.heatmap(
            shown,
            "Mean concept score of each generator's images relative to the reals",
            "SD of reals",
            zmid=0.0,
            x_title="generator",
        ),
        width="stretch",
        key="concept_matrix",
    )
    st.caption(
        "Each cell: (mean score of the generator's images − mean score of the reals) / SD of "
        "the reals. Red: the generator shows more of the positive pole than real photos."
    )


def _has_embeddings() -> bool:
    return analysis.neighbour_index(ws, ctx.backbone_id, "projected").unit.shape[0] > 0


with views.section_guard():
    if not _has_embeddings():  # an empty workspace, or another backbone's: say what to do
        views.empty_state(
            f"No labelled images with embeddings of {ctx.backbone_id} in this workspace: "
            "register and extract a dataset on the Data page."
        )
    else:
        report, head = _report()
        global_view(report, head)
        st.divider()
        generator_matrix(report)
        st.divider()
        concepts_view.one_concept(ctx, report)
st.divider()
with views.section_guard():
    cues_view.stability_panel(ctx, ctx.head())
st.divider()
with views.section_guard():
    cues_view.released_comparison()
st.divider()
with views.section_guard():
    concepts_view.custom_concept(ctx)
