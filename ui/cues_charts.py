"""Plotly figures for assessing the cues: the released concept models' shift, and survival of
explanations per generator. Plain functions from tables to figures (no Streamlit, no
workspace), tested in ``tests/test_cues_ui.py``; colours follow ``ui.charts``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ui.charts import (
    NEUTRAL_COLOUR,
    REAL_COLOUR,
    SYNTHETIC_COLOUR,
    _style,
    concept_label,
    empty_figure,
)


def shift_heatmap(table: pd.DataFrame, domains: list[str], top_n: int = 20) -> go.Figure:
    """The ``top_n`` concepts whose role shifts most (rows, by ``spread``) x domains: colour
    = importance with its sign (|w| / max |w| of the domain, + towards synthetic), text the
    same value."""
    if table is None or table.empty:
        return empty_figure("no released concept models to compare")
    df = table.sort_values("spread", ascending=False, kind="stable").head(top_n)
    signed = np.vstack(
        [df[f"importance_{d}"].to_numpy() * np.sign(df[f"weight_{d}"].to_numpy()) for d in domains]
    ).T
    labels = [
        f"{concept_label(c)} ({s:.2f})" for c, s in zip(df["concept"], df["spread"], strict=True)
    ]
    fig = go.Figure(
        go.Heatmap(
            z=signed,
            x=domains,
            y=labels,
            zmin=-1,
            zmax=1,
            zmid=0,
            colorscale=[[0, REAL_COLOUR], [0.5, "#f4f5f7"], [1, SYNTHETIC_COLOUR]],
            text=[[f"{v:+.2f}" for v in row] for row in signed],
            texttemplate="%{text}",
            colorbar={"title": {"text": "signed importance"}},
            hovertemplate="%{y} · %{x}: %{z:+.2f}<extra></extra>",
        )
    )
    fig.update_xaxes(side="top")
    fig.update_yaxes(autorange="reversed", automargin=True, title="concept (spread)")
    return _style(
        fig,
        min(900, 24 * len(df) + 120),
        f"Top {len(df)} concepts whose role shifts most between domains",
    )


def correlation_heatmap(correlation: pd.DataFrame) -> go.Figure:
    """Spearman rank correlation of |w| between domains, values printed."""
    if correlation is None or correlation.empty:
        return empty_figure("no domains to correlate")
    values = correlation.to_numpy(dtype=float)
    fig = go.Figure(
        go.Heatmap(
            z=values,
            x=list(correlation.columns),
            y=list(correlation.index),
            zmin=-1,
            zmax=1,
            zmid=0,
            colorscale="RdBu_r",
            text=[[f"{v:.2f}" for v in row] for row in values],
            texttemplate="%{text}",
            colorbar={"title": {"text": "Spearman ρ"}},
            hovertemplate="%{y} × %{x}: %{z:.2f}<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed", automargin=True)
    return _style(fig, 300, "Rank correlation of |w| between domains")


def domain_importance_bar(top: pd.DataFrame, domain: str) -> go.Figure:
    """One domain's top concepts (``ConceptShift.top``): signed importance, poles on hover."""
    if top is None or top.empty:
        return empty_figure(f"{domain}: no concepts")
    df = top.iloc[::-1]
    signed = df["importance"] * np.sign(df["weight"])
    fig = go.Figure(
        go.Bar(
            x=signed,
            y=[concept_label(c) for c in df["concept"]],
            orientation="h",
            marker_color=[SYNTHETIC_COLOUR if v > 0 else REAL_COLOUR for v in signed],
            customdata=np.stack([df["positive"], df["negative"]], axis=1),
            hovertemplate="%{y}: %{x:+.2f}<br>%{customdata[0]} ↔ %{customdata[1]}<extra></extra>",
        )
    )
    fig.add_vline(x=0, line={"color": "#4a5361", "width": 1})
    fig.update_xaxes(title="← real · importance (|w| / max) · synthetic →", range=[-1.05, 1.05])
    fig.update_yaxes(automargin=True)
    return _style(fig, max(260, 24 * len(df) + 90), f"Top {len(df)} concepts of {domain}")


def survival_scatter(table: pd.DataFrame, top_k: int) -> go.Figure:
    """AP (x) against selection survival (y), one point per generator; diagnostic agreement
    in the marker colour and on hover."""
    if table is None or table.empty:
        return empty_figure("no generators to compare")
    df = table.copy()
    agreement = df["diagnostic_agreement"].astype(float)
    fig = go.Figure(
        go.Scatter(
            x=df["ap"],
            y=df["selection_survival"],
            mode="markers+text",
            text=df["generator"],
            # neighbours by AP take turns above and below their marker, so labels do not collide
            textposition=[
                "top center" if rank % 2 == 0 else "bottom center"
                for rank in df["ap"].rank(method="first").fillna(0).astype(int)
            ],
            marker={
                "size": 14,
                "color": agreement.fillna(0.0),
                "colorscale": [[0, NEUTRAL_COLOUR], [1, SYNTHETIC_COLOUR]],
                "cmin": -1,
                "cmax": 1,
                "colorbar": {"title": {"text": "agreement ρ"}},
                "line": {"width": 1, "color": "#4a5361"},
            },
            customdata=np.stack([agreement, df["n_fake"]], axis=1),
            hovertemplate="%{text}<br>AP %{x:.3f}<br>survival %{y:.2f}<br>agreement "
            "%{customdata[0]:.2f}<br>%{customdata[1]} fakes<extra></extra>",
        )
    )
    fig.update_xaxes(title="AP on this generator", range=[-0.02, 1.05])
    fig.update_yaxes(title=f"selection survival (top-{top_k} Jaccard)", range=[-0.05, 1.1])
    return _style(fig, 360, "Detection against survival of the explanation")
