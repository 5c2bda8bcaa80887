"""Drawing of the Concepts page: one concept up close (its scores, AUCs and extreme
images) and a custom concept typed in and scored over the workspace.

Scores come from ``concepts.directions``, ``concepts.importance`` and ``detector.metrics``
through ``ui.analysis``; this module draws them. The page calls :func:`one_concept` and
:func:`custom_concept`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from concepts.directions import phrase_direction
from concepts.importance import custom_concept_report
from detector.metrics import small_group_note
from ui import analysis, charts, views

GALLERY = 6
label_of = charts.concept_label


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


def one_concept(ctx, report) -> None:
    """The picked concept's poles, its AUC per generator, its score distribution and the
    images that score highest and lowest."""
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
    dirs = _report_directions(ctx, report)
    data = analysis.concept_scores(ctx, dirs, names)
    scores = data.scores[:, names.index(pick)]
    row = auc[auc["concept"] == pick]
    if len(row):
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


def _report_directions(ctx, report) -> np.ndarray:
    head = ctx.head()
    if head is not None and getattr(head, "head_type", None) == "concept":
        return np.asarray(head.directions_, dtype=np.float32)
    return analysis.directions(ctx, report.vocabulary)


def custom_concept(ctx) -> None:
    """A phrase (or a pair of opposites) typed in, scored on every workspace image."""
    ws = ctx.workspace()
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
