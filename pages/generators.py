"""Generators: how well each generator is caught, how detectors transfer between generators,
and two groups side by side."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from detector.inference import head_threshold
from ui import analysis, charts, resources, tasks, views
from ui.frame import page_context

ctx = page_context()
ws = ctx.workspace()
registry = resources.job_registry()
GALLERY = 6

st.title("Generators")
st.caption(
    "Average precision (AP) of each generator's images against the real ones, with 95% "
    "bootstrap intervals; mAP is their mean (pooled AP over all fakes is not mAP and is not "
    "shown as such). Then how a detector trained on one generator finds the others, and any "
    "two groups side by side."
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
    return head, subset, split, pairing


def ap_section(head, subset, split, pairing) -> None:
    st.subheader("AP per generator")
    table = analysis.ap_table(ws, head, subset, split, pairing)
    m = table[table["metric"] == "mAP"]
    left, right = st.columns([2, 3], gap="large")
    with left:
        if not m.empty and np.isfinite(m["value"].iloc[0]):
            row = m.iloc[0]
            st.metric(
                f"mAP ({pairing} pairing)",
                f"{row['value']:.3f}",
                help="Mean over generators of each generator's AP against the reals.",
            )
            if np.isfinite(row["ci_low"]):
                st.caption(f"95% CI [{row['ci_low']:.3f}, {row['ci_high']:.3f}]")
        ap = table[table["metric"] == "ap"].sort_values("value", ascending=False)
        shown = pd.DataFrame(
            {
                "generator": ap["generator"],
                "AP": ap["value"],
                "95% CI": [
                    f"[{lo:.3f}, {hi:.3f}]" if np.isfinite(lo) else "n/a"
                    for lo, hi in zip(ap["ci_low"], ap["ci_high"], strict=True)
                ],
                "fakes": ap["n_fake"],
                "reals": ap["n_real"],
            }
        )
        notes = [n for n in ap["note"].dropna().unique() if n]
        st.dataframe(
            shown,
            hide_index=True,
            width="stretch",
            column_config={"AP": st.column_config.NumberColumn("AP", format="%.3f")},
        )
        for note in notes:
            st.caption(f"Note: {note}")
        st.download_button(
            "Download AP table (CSV)",
            table.to_csv(index=False),
            file_name=f"ap_{split}_{pairing}.csv",
            mime="text/csv",
            icon=":material/download:",
        )
    with right:
        st.plotly_chart(charts.ap_bar(table), width="stretch", key="ap_bar")
    meta = subset.meta
    y = meta["label"].astype(int).to_numpy()
    gens = meta["generator"].to_numpy(dtype=object)
    c1, c2 = st.columns(2, gap="large")
    c1.plotly_chart(charts.pr_curves(y, subset.logit, gens), width="stretch", key="pr")
    c2.plotly_chart(charts.roc_curves(y, subset.logit, gens), width="stretch", key="roc")
    st.caption("Each curve: one generator's fakes against all reals of the split.")


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
    if job is not None and (job.running or job.status != "done"):

        @st.fragment(run_every=1.0 if job.running else None)
        def live() -> None:
            views.job_panel(job, key=f"transfer_{job.id}")
            if not job.running and st.session_state.get("transfer_seen") != job.id:
                st.session_state["transfer_seen"] = job.id
                st.rerun(scope="app")

        live()
    if not stored:
        if not running:
            views.empty_state(
                "Not computed yet for this backbone and head type: it trains one head per "
                "generator (seconds on cached embeddings)."
            )
        return
    table = pd.DataFrame(stored["table"])
    matrix = table.pivot(index="train_group", columns="test_group", values="mAP")
    matrix = matrix.reindex(index=list(dict.fromkeys(table["train_group"])))
    matrix = matrix[list(dict.fromkeys(table["test_group"]))]
    st.plotly_chart(
        charts.heatmap(
            matrix,
            f"Train × test mAP ({head_type} heads, {stored['pairing']} pairing)",
            "mAP",
            zmin=0.0,
            zmax=1.0,
            diverging=False,
            x_title="tested on",
            y_title="trained on",
        ),
        width="stretch",
        key="transfer_heatmap",
    )
    from detector.train import matrix_table

    with st.expander("Cells with 95% intervals"):
        st.dataframe(matrix_table(table), width="stretch")


def side_by_side(head, subset) -> None:
    st.subheader("Side by side")
    meta = subset.meta
    groups = ["real", *sorted(g for g in meta["group"].unique() if g != "real")]
    if len(groups) < 2:
        views.empty_state("Side by side needs at least two groups (real and a generator).")
        return
    c = st.columns(2)
    a = c[0].selectbox("Group A", groups, index=0, key="sbs_a")
    b_default = 1 if len(groups) > 1 else 0
    b = c[1].selectbox("Group B", groups, index=b_default, key="sbs_b")
    if a == b:
        st.info("Pick two different groups.")
        return
    threshold = head_threshold(head)
    mask_a = (meta["group"] == a).to_numpy()
    mask_b = (meta["group"] == b).to_numpy()
    p = subset.probability
    cols = st.columns(2, gap="large")
    for col, name, mask in ((cols[0], a, mask_a), (cols[1], b, mask_b)):
        with col:
            above = float((p[mask] > threshold).mean()) if mask.any() else float("nan")
            st.markdown(
                f"**{name}** · {int(mask.sum()):,} images · {above:.0%} called synthetic "
                f"(P > {threshold:.2f})"
            )
            _gallery(meta[mask], p[mask])
    c1, c2 = st.columns(2, gap="large")
    c1.plotly_chart(
        charts.score_overlap(p[mask_a], p[mask_b], a, b, threshold),
        width="stretch",
        key="sbs_overlap",
    )
    with c2, views.section_guard():
        _profiles(a, b)
    if a != "real" and b != "real":
        st.caption(
            "Both groups are synthetic: the detector only separates real from synthetic, so "
            "overlapping scores here mean it finds both equally, not that it mixes them up."
        )
    else:
        fake = b if a == "real" else a
        real_mask = mask_a if a == "real" else mask_b
        fake_mask = mask_b if a == "real" else mask_a
        missed = float((p[fake_mask] <= threshold).mean()) if fake_mask.any() else float("nan")
        false_alarm = float((p[real_mask] > threshold).mean()) if real_mask.any() else np.nan
        st.caption(
            f"At the threshold {threshold:.2f}: {missed:.0%} of {fake} images pass as real; "
            f"{false_alarm:.0%} of real images are flagged synthetic."
        )


def _gallery(meta: pd.DataFrame, probs: np.ndarray) -> None:
    if meta.empty:
        st.caption("No images.")
        return
    order = np.argsort(-probs)
    pick = np.unique(np.linspace(0, len(order) - 1, min(GALLERY, len(order))).round().astype(int))
    cols = st.columns(3)
    for j, k in enumerate(pick):
        i = order[k]
        row = meta.iloc[int(i)]
        with cols[j % 3]:
            thumb = analysis.file_thumbnail(row["path"])
            if thumb is not None:
                st.image(thumb, width="stretch")
            st.caption(f"P(synthetic) {probs[int(i)]:.2f}")
    st.caption("From the most to the least synthetic-looking, evenly spaced.")


def _profiles(a: str, b: str) -> None:
    vocab = analysis.vocabulary()
    dirs = analysis.directions(ctx, vocab)
    data = analysis.concept_scores(ctx, dirs, list(vocab.ids))
    groups = data.meta["group"].to_numpy()
    if not (groups == a).any() or not (groups == b).any():
        views.empty_state("No concept scores for one of the groups.")
        return
    profile = pd.DataFrame(
        {
            "concept": list(vocab.ids),
            "a": data.scores[groups == a].mean(axis=0),
            "b": data.scores[groups == b].mean(axis=0),
        }
    )
    profile["label"] = profile["concept"].str.replace("_", " ")
    st.plotly_chart(
        charts.profile_compare(profile, a, b, top_k=10), width="stretch", key="sbs_profile"
    )


setup = None
with views.section_guard():
    setup = _setup()
if setup is not None:
    head, subset, split, pairing = setup
    with views.section_guard():
        ap_section(head, subset, split, pairing)
    st.divider()
    with views.section_guard():
        transfer_section(head)
    st.divider()
    with views.section_guard():
        side_by_side(head, subset)
# The robustness section (AP vs perturbation strength) goes here, as one more guarded section.
