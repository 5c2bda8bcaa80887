"""Dashboard sections for assessing the cues: the paper's four released concept models side by
side (Concepts page, every mode), the stability of the current head type's explanations across
seeds (Concepts page), and the survival of explanations per generator (Generators page).

Every number comes from ``concepts.shift``, ``concepts.stability`` and ``concepts.survival``;
this module caches and draws. Pages call ``released_comparison()``,
``stability_panel(ctx, head)`` and ``survival_section(ctx, head, split)``.
"""

from __future__ import annotations

import os

import pandas as pd
import streamlit as st

from concepts.attribution import is_concept_model
from concepts.shift import released_shift
from concepts.stability import badge, stored_stability
from concepts.survival import workspace_survival
from detector.errors import CueLensError
from ui import analysis, cues_charts, resources, views
from ui.adapters import head_key
from ui.charts import concept_label
from ui.job_panel import live_job
from ui.tasks import stability_job

RELEASED_BADGE = (
    "Real learned weights: the paper's four released concept models (Willi, Mathys, Graber; "
    "MIT licence), read as released and verified by SHA-256. Not the demo, and the same in "
    "every mode: no backbone is needed."
)


# -- the released concept models ---------------------------------------------------------------


@st.cache_resource(show_spinner=False)
def _released_shift(download: bool):
    return released_shift(download=download)


def _released_or_none():
    """The comparison from files at hand (no download), or (None, why)."""
    try:
        return _released_shift(False), None
    except CueLensError as exc:
        return None, str(exc)


def released_comparison() -> None:
    """Concept shift between the four training domains of the released concept models."""
    st.subheader("How the paper's four detectors differ: concept shift between domains")
    st.info(RELEASED_BADGE, icon=":material/verified:")
    shift, why = _released_or_none()
    if shift is None:
        _released_missing(why)
        return
    c = st.columns(4)
    corr = shift.correlation
    off = [corr.loc[a, b] for i, a in enumerate(shift.domains) for b in shift.domains[i + 1 :]]
    c[0].metric("Concepts", len(shift.table))
    c[1].metric("Domains", len(shift.domains))
    c[2].metric(
        "Mean rank correlation",
        f"{sum(off) / len(off):.2f}",
        help="Mean Spearman correlation of |w| over the pairs of domains: 1 = the same "
        "concepts matter in the same order, 0 = unrelated.",
    )
    c[3].metric("Concepts that flip sign", int(shift.table["sign_flip"].sum()))
    left, right = st.columns([3, 2], gap="large")
    with left:
        top_n = st.slider("Heatmap rows", 5, 40, 15, 1, key="released_top_n")
        st.plotly_chart(
            cues_charts.shift_heatmap(shift.table, shift.domains, top_n),
            width="stretch",
            key="released_shift",
        )
        st.caption(
            "Each cell: the concept's importance in that domain's detector, |w| divided by the "
            "domain's largest |w| (domains train to different weight scales), with the sign of "
            "w: orange = an image nearer the concept's *positive* pole is pushed towards "
            "synthetic, blue = towards real. Rows: the concepts whose importance varies most "
            "between domains (spread = SD over domains, in brackets)."
        )
    with right:
        st.plotly_chart(cues_charts.correlation_heatmap(corr), width="stretch", key="released_corr")
        st.caption(
            "Spearman rank correlation of |w| between two domains' detectors. Low values: the "
            "detectors rely on different concepts, one reason why a detector trained on one "
            "family of generators transfers badly to another."
        )
        domain = st.selectbox("One domain", shift.domains, index=2, key="released_domain")
        st.plotly_chart(
            cues_charts.domain_importance_bar(shift.top(domain, 12), domain),
            width="stretch",
            key="released_domain_bar",
        )
    st.markdown("**Top concepts of each domain, side by side** (sign, concept; its two poles)")
    k = st.slider("Rows", 5, 30, 10, 1, key="released_rows")
    st.dataframe(shift.side_by_side(k), hide_index=True, width="stretch", key="released_table")
    for note in shift.notes:
        st.caption(f"Note: {note}")
    views.csv_download(
        "Download the comparison (CSV)",
        shift.table,
        "released_concept_shift.csv",
        key="released_csv",
    )


def _released_missing(why: str | None) -> None:
    st.warning(
        "The released concept models are not available on this machine, so this comparison "
        "cannot be shown yet.",
        icon=":material/cloud_off:",
    )
    with st.expander("What is missing and how to provide it"):
        st.code(why or "unknown reason", language=None, wrap_lines=True)
    if os.environ.get("CUE_LENS_OFFLINE") == "1":
        st.caption("Downloads are switched off (CUE_LENS_OFFLINE=1).")
        return
    if st.button(
        "Download the four released concept models (about 4 MB, verified by SHA-256)",
        key="released_download",
        icon=":material/download:",
    ):
        with st.spinner("Downloading and verifying…"):
            try:
                _released_shift(True)
            except CueLensError as exc:
                views.show_error(exc)
                return
        _released_shift.clear()
        st.rerun()


# -- stability across seeds ---------------------------------------------------------------------


def _stability_key(ws, backbone_id: str, head_type: str) -> tuple:
    return (str(ws.path), "stability", backbone_id, head_type)


def stability_panel(ctx, head) -> None:
    """The stored stability of the current head type's explanations, with a badge per
    concept, and a button that measures it in the background."""
    head_type = getattr(head, "head_type", None) if head is not None else None
    st.subheader("Can these explanations be trusted? Stability across seeds")
    if head_type not in ("linear", "orthogonal", "concept"):
        views.empty_state("Choose a detector in the sidebar to see how stable its concepts are.")
        return
    ws = ctx.workspace()
    registry = resources.job_registry()
    key = _stability_key(ws, ctx.backbone_id, head_type)
    job = registry.find(key)
    running = job is not None and job.running
    stored = stored_stability(ws, ctx.backbone_id, head_type)
    c = st.columns([2, 1, 3])
    seeds = c[0].number_input(
        "Seeds", 2, 10, 5, 1, key="stability_seeds", help="Fits of the same head type."
    )
    if c[1].button(
        "Re-measure" if stored else "Measure",
        disabled=running,
        key="stability_go",
        icon=":material/replay:",
    ):
        registry.start(
            "train",
            f"Stability of {head_type} heads ({int(seeds)} seeds)",
            key,
            stability_job,
            str(ws.path),
            ctx.backbone_id,
            head_type,
            int(seeds),
        )
        st.rerun()
    c[2].caption(
        f"Retrains {head_type} heads with seeds 0..N-1 on this workspace's split and compares "
        f"their concepts; the same as `python -m detector stability --head {head_type}`."
    )
    live_job(job, "stability", keeps_work=False, hide_done=True)
    if not stored:
        if not running:
            views.empty_state(
                f"Not measured yet for {head_type} heads on this backbone. Measure it here, or "
                f"run `python -m detector stability --workspace {ws.path} --head {head_type} "
                f"--seeds 5`."
            )
        return
    group = stored["groups"][0]
    imp = group["importance"]
    k = imp["top_k"]
    n = len(group["fits"])
    concepts = pd.DataFrame(imp["concepts"])
    stable = float((concepts["same_sign"] == n).mean()) if len(concepts) else float("nan")
    c = st.columns(4)
    jac, rho = imp["top_k_jaccard"]["mean"], imp["spearman_abs"]["mean"]
    c[0].metric(
        f"Top-{k} overlap",
        "n/a" if jac is None else f"{jac:.2f}",
        help=f"Mean Jaccard overlap of the top-{k} concepts (by |importance|) over every "
        f"pair of the {n} fits. 1 = the same concepts every time.",
    )
    c[1].metric(
        "Rank agreement",
        "n/a" if rho is None else f"{rho:.2f}",
        help="Mean Spearman correlation of |importance| between fits (concepts that are 0 in "
        "both left out).",
    )
    c[2].metric(f"Same sign in all {n}", f"{stable:.0%}", help="Share of concepts.")
    d = group.get("directions")
    if d:
        c[3].metric(
            "Directions: matched |cos|",
            f"{d['matched_abs_cosine']['mean']:.2f}",
            help=f"Orthogonal head: rows matched by the Hungarian algorithm on |cosine|, signs "
            f"aligned; 1 = the same directions. Subspace distance "
            f"{d['chordal_distance']['mean']:.2f} (0 = the same subspace, at most "
            f"{d['max_chordal_distance']:.2f}): small distance with low |cos| means the "
            f"directions turned inside a stable subspace.",
        )
    st.caption(
        f"{stored['summary']}. Measured {stored['created']} on {stored['backbone_id']}; "
        f"importance = {stored['importance_definition']} on {stored['importance_split']}."
        + (" DEMO: random weights." if stored.get("demo") else "")
    )
    table = pd.DataFrame(
        {
            "concept": concepts["concept"].map(concept_label),
            "mean importance": concepts["mean_importance"],
            "pushes towards": concepts["sign"].map({1: "synthetic", -1: "real", 0: "-"}),
            "stability": [badge({**r, "top_k": k}) for r in imp["concepts"]],
            "trust": [_trust(r, n) for r in imp["concepts"]],
        }
    )
    st.dataframe(
        table.head(30),
        hide_index=True,
        width="stretch",
        key="stability_table",
        column_config={
            "mean importance": st.column_config.NumberColumn(format="%+.4f"),
        },
    )
    st.caption(
        f"stable: same sign and in the top-{k} in every fit; varies: same sign, but not always "
        f"among the top-{k}; sign flips: the concept pushes towards real in some fits and "
        f"towards synthetic in others; do not read much into it."
    )
    if len(stored["groups"]) > 1:
        with st.expander(f"All {len(stored['groups'])} groups of fits (seeds and betas)"):
            st.dataframe(_groups_table(stored), hide_index=True, width="stretch")


def _groups_table(stored: dict) -> pd.DataFrame:
    """One row per group of fits of a stored stability result."""
    rows = []
    for g in stored["groups"]:
        imp = g["importance"]
        n = len(g["fits"])
        rows.append(
            {
                "group": g["label"],
                "fits": n,
                f"top-{imp['top_k']} overlap": imp["top_k_jaccard"]["mean"],
                "rank agreement": imp["spearman_abs"]["mean"],
                f"same sign in all {n}": sum(c["same_sign"] == n for c in imp["concepts"])
                / max(1, len(imp["concepts"])),
                "validation mAP": ", ".join(
                    "-" if f["validation_map"] is None else f"{f['validation_map']:.3f}"
                    for f in g["fits"]
                ),
            }
        )
    return pd.DataFrame(rows)


def _trust(entry: dict, n: int) -> str:
    """``stable`` (same sign and top-K in every fit), ``varies`` (same sign only) or
    ``sign flips``."""
    if entry["same_sign"] < n:
        return "sign flips"
    return "stable" if entry["in_top_k"] == n else "varies"


# -- survival per generator ---------------------------------------------------------------------


@st.cache_resource(show_spinner=False, max_entries=8, ttl=resources.EXTERNAL_TTL)
def _survival(_ws, _head, path: str, backbone_id: str, hkey: str, split, top: int, gen: int):
    return workspace_survival(_ws, _head, split=split, top=top, backbone_id=backbone_id)


def survival_section(ctx, head, split: str | None) -> None:
    """AP against survival of the explanation per generator, and two generators compared."""
    st.subheader("Do explanations survive where detection collapses?")
    st.caption(
        "Per generator: the **diagnostic importance** of each concept on its images (mean "
        "contribution to the logit of its fakes minus that of the reals) compared with the "
        "detector's importance on its own training images. **Selection survival**: overlap "
        "(Jaccard) of the two top-K concept sets; **agreement**: Spearman correlation of "
        "|importance|. A generator with low AP and low survival is one where the detector's "
        "usual cues go silent."
    )
    ws = ctx.workspace()
    top = int(st.number_input("K (top concepts)", 3, 30, 10, 1, key="survival_k"))
    if not is_concept_model(head):
        analysis.directions(ctx, analysis.vocabulary())  # cached in the workspace for the library
    result = _survival(
        ws,
        head,
        str(ws.path),
        ctx.backbone_id,
        head_key(head),
        split,
        top,
        resources.generation(ws.path),
    )
    left, right = st.columns([3, 2], gap="large")
    with left:
        st.plotly_chart(
            cues_charts.survival_scatter(result.table, result.top_k),
            width="stretch",
            key="survival_scatter",
        )
    with right:
        shown = result.table.rename(
            columns={
                "ap": "AP",
                "diagnostic_agreement": "agreement",
                "selection_survival": "survival",
                "n_fake": "fakes",
                "n_real": "reals",
            }
        )[["generator", "AP", "survival", "agreement", "fakes", "reals"]]
        st.dataframe(
            shown,
            hide_index=True,
            width="stretch",
            key="survival_table",
            column_config={
                c: st.column_config.NumberColumn(format="%.3f")
                for c in ("AP", "survival", "agreement")
            },
        )
        fid = "" if result.fidelity is None else f" (fidelity {result.fidelity:.1%})"
        st.caption(
            f"Evaluated on {result.split}; source importance from {result.source}; "
            f"explanation: {result.method}{fid}."
            + (" DEMO: random weights, the numbers mean nothing." if result.demo else "")
        )
        for note in result.notes:
            st.caption(f"Note: {note}")
    gens = list(result.importance)
    if len(gens) < 2:
        return
    c = st.columns(2)
    a = c[0].selectbox("Generator A", gens, index=0, key="survival_a")
    b = c[1].selectbox("Generator B", gens, index=1, key="survival_b")
    cmp = result.compare([a] if a == b else [a, b])
    rows = {"concept": cmp["concept"].map(concept_label), "source": cmp["source"]}
    for g in dict.fromkeys([a, b]):
        rows[g] = cmp[g]
        rows[f"{g}: survives?"] = cmp[f"{g} survives"].map({True: "survives", False: "silent"})
    st.dataframe(
        pd.DataFrame(rows),
        hide_index=True,
        width="stretch",
        key="survival_compare",
        column_config={
            col: st.column_config.NumberColumn(format="%+.3f")
            for col in ("source", *dict.fromkeys([a, b]))
        },
    )
    st.caption(
        f"The detector's top-{result.top_k} concepts on its training images, and their "
        f"diagnostic importance on each generator: *survives* = still among that generator's "
        f"top-{result.top_k}, *silent* = not."
    )
