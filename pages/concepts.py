"""Concepts: what the detector relies on, per class and per generator; one concept up close;
a custom concept typed in and scored live."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from ui import analysis, charts, cues_view, views
from ui.frame import page_context

ctx = page_context()
ws = ctx.workspace()
GALLERY = 6

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


def _gallery(meta: pd.DataFrame, scores: np.ndarray, idx: np.ndarray, title: str) -> None:
    st.markdown(f"**{title}**")
    cols = st.columns(GALLERY)
    for col, i in zip(cols, idx, strict=False):
        row = meta.iloc[int(i)]
        with col:
            thumb = analysis.file_thumbnail(row["path"])
            if thumb is not None:
                st.image(thumb, width="stretch")
            colour = ":blue" if row["group"] == "real" else ":orange"
            st.caption(f"{colour}[{row['group']}]  \nscore {scores[int(i)]:+.3f}")


def _score_views(meta, scores, title: str, key: str) -> None:
    groups = meta["group"].to_numpy()
    st.plotly_chart(
        charts.score_distribution(scores, groups, title, x_title="concept score (cosine)"),
        width="stretch",
        key=f"{key}_dist",
    )
    order = np.argsort(scores)
    _gallery(meta, scores, order[::-1][:GALLERY], "Highest scoring images")
    _gallery(meta, scores, order[:GALLERY], "Lowest scoring images")


def one_concept(report) -> None:
    st.subheader("One concept up close")
    vocab = report.vocabulary
    names = list(report.concepts["concept"])
    auc = report.top_auc()
    default = auc["concept"].iloc[0] if len(auc) else names[0]
    pick = st.selectbox(
        "Concept",
        names,
        index=names.index(default) if default in names else 0,
        format_func=label_of,
        key="concept_pick",
        help="Ordered as in the vocabulary; the default is the one that best separates real "
        "from synthetic on its own.",
    )
    if pick in vocab.ids:
        i = vocab.index(pick)
        st.markdown(
            f"*{vocab.positive[i]}* ↔ *{vocab.negative[i]}* · {vocab.category[i]}  \n"
            f"{vocab.explanation[i]}"
        )
    dirs = _report_directions(report)
    data = analysis.concept_scores(ctx, dirs, names)
    scores = data.scores[:, names.index(pick)]
    row = auc[auc["concept"] == pick]
    if len(row):
        from detector.metrics import small_group_note

        gens = [c for c in auc.columns if c not in ("concept", "category", "all")]
        labels = data.meta["label"].astype("Int64")
        n_real = int((labels == 0).sum())
        n_fake = data.meta.loc[labels == 1, "generator"].value_counts()
        caveats = {g: small_group_note(int(n_fake.get(g, 0)), n_real) for g in gens}
        aucs = " · ".join(
            f"{g} {row.iloc[0][g]:.2f}" + (" †" if caveats[g] else "")
            for g in gens
            if pd.notna(row.iloc[0][g])
        )
        st.caption(
            f"AUC of this score alone, synthetic vs real: {row.iloc[0]['all']:.2f} "
            f"(per generator: {aucs}). 0.5 = no separation."
            + (
                " † too few images for a reliable AUC: "
                + "; ".join(f"{g}: {c}" for g, c in caveats.items() if c)
                if any(caveats.values())
                else ""
            )
        )
    _score_views(data.meta, scores, f"Scores on “{label_of(pick)}”", "one")


def _report_directions(report) -> np.ndarray:
    head = ctx.head()
    if head is not None and getattr(head, "head_type", None) == "concept":
        return np.asarray(head.directions_, dtype=np.float32)
    return analysis.directions(ctx, report.vocabulary)


def custom_concept() -> None:
    st.subheader("Your own concept")
    st.caption(
        "Type a phrase (scored against a neutral *a photograph*) or a pair of opposites. The "
        "text is encoded by the backbone's text tower; the whole workspace is scored at once."
    )
    with st.form("custom_concept"):
        c = st.columns([3, 3, 1])
        positive = c[0].text_input("Phrase", placeholder="e.g. waxy plastic skin")
        negative = c[1].text_input("Opposite (optional)", placeholder="e.g. natural skin texture")
        go = c[2].form_submit_button("Score", type="primary", width="stretch")
    if go and positive.strip():
        st.session_state["custom_concept_query"] = (positive.strip(), negative.strip() or None)
    chosen = st.session_state.get("custom_concept_query")
    if not chosen:
        return
    from concepts.directions import phrase_direction
    from concepts.importance import custom_concept_report

    positive, negative = chosen
    data = analysis.neighbour_index(ws, ctx.backbone_id, "projected")
    if data.unit.shape[0] == 0:  # checked first: nothing to score needs no text encoder
        views.empty_state("No labelled images with embeddings of this backbone to score.")
        return
    direction = phrase_direction(
        positive, negative, ctx.backbone(), backbone_id=ctx.backbone_id, workspace=ws
    )
    result = custom_concept_report(direction, data.meta, normalized=data.unit)
    by_gen = " · ".join(f"{g} {v:.2f}" for g, v in result["auc_by_generator"].items())
    title = f"“{positive}”" + (f" vs “{negative}”" if negative else "")
    st.caption(
        f"{title}: AUC synthetic vs real {result['auc']:.2f} (per generator: {by_gen or 'n/a'})."
    )
    _score_views(data.meta, result["scores"], f"Scores on {title}", "custom")


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
        one_concept(report)
st.divider()
with views.section_guard():
    cues_view.stability_panel(ctx, ctx.head())
st.divider()
with views.section_guard():
    cues_view.released_comparison()
st.divider()
with views.section_guard():
    custom_concept()
