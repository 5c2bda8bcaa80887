"""Drawing of the Generators page: AP per generator, the transfer matrix, two groups side
by side, and the robustness sweep's report.

The numbers come from the library (``detector.metrics`` through ``ui.analysis``,
``detector.train``, ``detector.perturb``); this module draws them. The page keeps the
choices of what to evaluate and the buttons that start background jobs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from detector.errors import CueLensError
from detector.inference import head_threshold
from detector.perturb import DEFAULT_SWEEP, FAMILIES, parse_perturbations, robustness_curves
from detector.train import matrix_table
from ui import analysis, charts, views

GALLERY = 6
# offered in the perturbation picker besides the default sweep (any other name can be typed)
MORE_PERTURBATIONS = (
    "jpeg:90", "jpeg:10", "resize:0.25", "resize:2", "blur:3", "crop:0.9", "noise:2", "noise:5",
    "noise:10", "jpeg:75+resize:0.5",
)  # fmt: skip


def ap_section(ctx, head, subset, split, pairing) -> None:
    """mAP with its interval, AP per generator, and the PR and ROC curves of each."""
    ws = ctx.workspace()
    st.subheader("AP per generator")
    overlap = analysis.in_sample(head, ws, subset)
    if overlap:
        counts = ", ".join(f"{n} {k}" for k, n in overlap.items())
        st.warning(
            f"In-sample: {counts} of these images were used to train or validate this "
            f"detector, so these numbers overstate how it does on new images. Choose the "
            f"test split."
        )
    table = analysis.ap_table(ws, head, subset, split, pairing)
    m = table[table["metric"] == "mAP"]
    left, right = st.columns([1, 1], gap="large")  # room for every column of the AP table
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
                "note": ap["note"].fillna(""),
            }
        )
        st.dataframe(
            shown,
            hide_index=True,
            width="stretch",
            column_config={
                "generator": st.column_config.TextColumn("generator", width="small"),
                "AP": st.column_config.NumberColumn("AP", format="%.3f", width="small"),
                "95% CI": st.column_config.TextColumn("95% CI", width="small"),
                "fakes": st.column_config.NumberColumn("fakes", format="%d", width="small"),
                "reals": st.column_config.NumberColumn("reals", format="%d", width="small"),
                "note": st.column_config.TextColumn("note", width="medium"),
            },
        )
        small = ap[ap["note"].fillna("").str.contains("too few")]
        if len(small):
            st.warning(
                f"{len(small)} generator(s) have too few images for a reliable AP "
                f"({', '.join(map(str, small['generator']))}): read their values as anecdotes.",
                icon=":material/warning:",
            )
        if not m.empty and isinstance(m["note"].iloc[0], str):
            st.caption(f"Note: {m['note'].iloc[0]}")
        context = analysis.export_context(ctx, head)
        export = analysis.with_context(table, {**context, "split": split, "pairing": pairing})
        views.csv_download(
            "Download AP table (CSV)",
            export,
            f"ap_{split}_{pairing}.csv",
            help="With the backbone, detector, threshold, DEMO flag, split and pairing on "
            "every row.",
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


def transfer_matrix(stored: dict, head_type: str) -> None:
    """A stored transfer matrix as a heatmap, and its cells with 95% intervals."""
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
    with st.expander("Cells with 95% intervals"):
        st.dataframe(matrix_table(table), width="stretch")


def side_by_side(ctx, head, subset) -> None:
    """Two groups' images, scores and concept profiles next to each other."""
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
        _profiles(ctx, a, b)
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


def _profiles(ctx, a: str, b: str) -> None:
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


def perturbation_choices(report) -> tuple[list[str], list[str]]:
    """The perturbations offered (the default sweep, more, those of the shown sweep) and the
    ones chosen at first (those of the shown sweep, else the default sweep)."""
    done = [p for p in report.summary["perturbation"] if p != "none"] if report else []
    options = list(dict.fromkeys([*DEFAULT_SWEEP, *MORE_PERTURBATIONS, *done]))
    return options, done or list(DEFAULT_SWEEP)


def perturbations_ok(chosen: list[str]) -> bool:
    """Whether every chosen perturbation is understood; a message names a mistyped one."""
    try:
        parse_perturbations(chosen)
    except CueLensError as exc:
        views.show_error(exc)
        return False
    return True


def pick_sweep(reports: list, split: str | None, pairing: str):
    """The stored sweep for this split and pairing, else one of another pairing or split."""
    for report in reports:
        if report.split == split and report.pairing == pairing:
            return report, True
    same = [r for r in reports if r.pairing == pairing]
    return ((same or reports)[0], False) if reports else (None, False)


def sweep_report(report) -> None:
    """A stored robustness sweep: headline figures, curves per family, the table."""
    summary = report.summary
    clean = summary[summary["perturbation"] == "none"]
    perturbed = summary[summary["perturbation"] != "none"]
    n_images = int(clean["n_images"].iloc[0]) if len(clean) else 0
    st.caption(
        f"Shown: the last sweep on {report.split or 'all labelled images'} ({n_images:,} "
        f"images, {report.pairing} pairing). A verdict flips when P(synthetic) crosses the "
        f"detector's threshold, {report.threshold:.2f}."
        + (
            " Demo backbone: random weights, the numbers only show how it works."
            if report.is_demo
            else ""
        )
    )
    c = st.columns(4)
    if len(clean):
        c[0].metric("mAP, unperturbed", f"{float(clean['map'].iloc[0]):.3f}")
    if len(perturbed) and perturbed["map"].notna().any():
        worst = perturbed.loc[perturbed["map"].idxmin()]
        c[1].metric(
            f"Lowest mAP ({worst['perturbation']})",
            f"{worst['map']:.3f}",
            delta=f"{worst['delta_map']:+.3f}",
            help="The perturbation that costs the detector the most, and its change of mAP.",
        )
    if len(perturbed) and perturbed["flip_rate"].notna().any():
        flips = perturbed.loc[perturbed["flip_rate"].idxmax()]
        c[2].metric(
            f"Most flipped verdicts ({flips['perturbation']})",
            f"{flips['flip_rate']:.0%}",
            help="Share of all evaluated images whose verdict changed under this perturbation.",
        )
    c[3].metric("Perturbations", f"{len(perturbed)}")

    curves = robustness_curves(report.table)
    families = [f for f in FAMILIES if f in set(curves["family"])]
    for start in range(0, len(families), 2):
        cols = st.columns(2, gap="large")
        for col, family in zip(cols, families[start : start + 2], strict=False):
            col.plotly_chart(
                charts.robustness_lines(
                    curves,
                    family,
                    unit=FAMILIES[family]["unit"],
                    identity=FAMILIES[family]["identity"],
                ),
                width="stretch",
                key=f"rob_curve_{family}",
            )
    st.caption(
        "AP of each generator's images against the reals at each strength; the dashed line is "
        "mAP, the dotted one the unperturbed images. Stronger perturbations lie to the right "
        "(for resize, away from 1 on both sides)."
    )
    shown = pd.DataFrame(
        {
            "perturbation": summary["perturbation"],
            "mAP": summary["map"],
            "Δ mAP": summary["delta_map"],
            "flipped": 100 * summary["flip_rate"],
            "flipped (real)": 100 * summary["flip_rate_real"],
            "flipped (synthetic)": 100 * summary["flip_rate_synthetic"],
            "images": summary["n_images"],
            "not embedded": summary["n_missing"],
        }
    )
    percent = st.column_config.NumberColumn(format="%.1f %%")
    st.dataframe(
        shown,
        hide_index=True,
        width="stretch",
        height=38 + 35 * len(shown),  # every perturbation in view, no inner scrolling
        column_config={
            "mAP": st.column_config.NumberColumn(format="%.3f"),
            "Δ mAP": st.column_config.NumberColumn(format="%+.3f"),
            "flipped": percent,
            "flipped (real)": percent,
            "flipped (synthetic)": percent,
        },
    )
    with st.expander("AP per generator and perturbation"):
        table = report.table
        order = list(dict.fromkeys(table["perturbation"]))
        matrix = table.pivot(index="generator", columns="perturbation", values="ap")[order]
        st.dataframe(matrix, width="stretch")
        views.csv_download(
            "Download the sweep (CSV)",
            table,
            f"robustness_{report.head}_{report.split or 'all'}_{report.pairing}.csv",
        )
    if report.errors:
        with st.expander(f"{len(report.errors)} files could not be perturbed"):
            st.dataframe(pd.DataFrame(report.errors), hide_index=True, width="stretch")
