"""Plotly figures of the dashboard: plain functions from tables and arrays to figures.

Nothing here imports Streamlit, reads a workspace or runs a model: every function takes the
numbers to draw and returns a ``plotly.graph_objects.Figure``, so each chart is tested alone
(``tests/test_charts.py``) and reusable in notebooks. Colours follow one convention across
pages: blue = real, orange = synthetic, grey = inconclusive / unexplained.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

REAL_COLOUR = "#2f6db5"
SYNTHETIC_COLOUR = "#d9641e"
NEUTRAL_COLOUR = "#9aa3ae"
BAND_COLOURS = {
    "likely real": "#d6e6f7",
    "inconclusive": "#eceef1",
    "likely synthetic": "#f9dcc8",
}
SEQUENCE = ["#2f6db5", "#d9641e", "#3a9d5d", "#8e5cc2", "#c23b6b", "#7a8b99", "#c9a227"]
FONT = {"family": "Inter, Segoe UI, Helvetica, Arial, sans-serif", "size": 13}


def concept_label(concept_id: str) -> str:
    """A concept id as a reader sees it (``veiling_glare`` -> ``veiling glare``)."""
    return str(concept_id).replace("_", " ")


def pole_pair_label(concept_id: str, poles: tuple[str, str] | None) -> str:
    """Both poles of an antonym concept (``natural color saturation ↔ oversaturated neon
    colors``): a bar's sign then reads either way; the id when the poles are unknown."""
    if not poles:
        return concept_label(concept_id)
    return f"{poles[0]} ↔ {poles[1]}"


LEGEND_WIDTH_PX = 520  # the narrowest a chart with a legend is drawn (half a wide page)
LEGEND_ROW_PX = 24


def legend_rows(names: Sequence[str], width_px: int = LEGEND_WIDTH_PX) -> int:
    """Rows a horizontal legend of ``names`` takes in ``width_px`` (about 7 px per character
    plus 45 px for the symbol and gap per entry): the room kept above the plot for it."""
    rows, used = 1, 0
    for name in names:
        w = 45 + 7 * len(str(name))
        if used and used + w > width_px:
            rows, used = rows + 1, 0
        used += w
    return rows


def _style(fig: go.Figure, height: int, title: str | None = None) -> go.Figure:
    entries = [t.name for t in fig.data if getattr(t, "showlegend", None) is not False]
    legend = len(entries) > 0 and len(fig.data) > 1
    legend_px = LEGEND_ROW_PX * legend_rows(entries) + 4 if legend else 0
    # the title sits at the top of the figure, the legend between it and the plot: the top
    # margin holds both, so a legend of many generators never covers the title
    top = (34 if title else 8) + legend_px
    fig.update_layout(
        template="plotly_white",
        height=height + legend_px,
        font=FONT,
        margin={"l": 10, "r": 10, "t": top, "b": 10},
        title={
            "text": title,
            "x": 0,
            "xanchor": "left",
            "y": 1.0,
            "yref": "container",
            "yanchor": "top",
            "pad": {"t": 8},
            "font": {"size": 15},
        }
        if title
        else None,
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 0, "xanchor": "left"},
        hoverlabel={"font": FONT},
    )
    return fig


def _rows_chart(
    fig: go.Figure,
    title: str,
    x_title: str,
    rows: int,
    size: tuple[int, int, int],
    fidelity: float | None = None,
    *,
    zero_line: bool = False,
) -> go.Figure:
    """Finish a chart with one horizontal row per item (concepts, generators): the x-axis
    title, room for long row labels, a height of ``max(least, row_px * rows + extra)`` pixels
    for ``size = (row_px, least, extra)``; optionally a line at x = 0 and the explanation's
    fidelity in the title."""
    if zero_line:
        fig.add_vline(x=0, line={"color": "#4a5361", "width": 1})
    if fidelity is not None and np.isfinite(fidelity):
        title += f" · fidelity {fidelity:.1%}"
    fig.update_xaxes(title=x_title)
    fig.update_yaxes(automargin=True)
    row_px, least, extra = size
    return _style(fig, max(least, row_px * rows + extra), title)


def _marked_line(fig: go.Figure, x: float, text: str, line: dict, *, y=1.0, **label) -> None:
    """A vertical line at ``x`` with ``text`` beside it, ``y`` up the plot (0..1);
    ``label``: where the text sits and its font (plotly annotation settings)."""
    fig.add_vline(x=x, line=line)
    fig.add_annotation(x=x, y=y, yref="paper", text=text, showarrow=False, **label)


def empty_figure(message: str, height: int = 220) -> go.Figure:
    """A blank chart that says why it is blank (never an empty axis without explanation)."""
    fig = go.Figure()
    fig.add_annotation(
        text=message,
        x=0.5,
        y=0.5,
        xref="paper",
        yref="paper",
        showarrow=False,
        font={"size": 14, "color": "#5b6472"},
    )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _style(fig, height)


# -- verdicts and attributions ---------------------------------------------------------------


def verdict_strip(probability: float, low: float, high: float, threshold: float) -> go.Figure:
    """P(synthetic) on a 0..1 strip with the three verdict bands and their edges.

    ``low``/``high`` are the band edges (likely real below ``low``, likely synthetic above
    ``high``); ``threshold`` is the head's validation threshold, drawn as a dashed line.
    """
    fig = go.Figure()
    bands = (("likely real", 0.0, low), ("inconclusive", low, high), ("likely synthetic", high, 1))
    for name, x0, x1 in bands:
        if x1 <= x0:
            continue
        fig.add_shape(
            type="rect",
            x0=x0,
            x1=x1,
            y0=0,
            y1=1,
            line={"width": 0},
            fillcolor=BAND_COLOURS[name],
            layer="below",
        )
        fig.add_annotation(
            x=(x0 + x1) / 2,
            y=0.18,
            text=name,
            showarrow=False,
            font={"size": 11, "color": "#4a5361"},
        )
    fig.add_vline(x=threshold, line={"dash": "dash", "color": "#4a5361", "width": 1})
    colour = (
        SYNTHETIC_COLOUR if probability >= high else REAL_COLOUR if probability < low else "#666"
    )
    fig.add_trace(
        go.Scatter(
            x=[probability],
            y=[0.62],
            mode="markers+text",
            text=[f"{probability:.2f}"],
            textposition="top center",
            marker={"symbol": "diamond", "size": 16, "color": colour},
            hovertemplate="P(synthetic) = %{x:.3f}<extra></extra>",
            showlegend=False,
        )
    )
    fig.update_xaxes(
        range=[0, 1],
        tickvals=sorted({0.0, low, threshold, high, 1.0}),
        tickformat=".2f",
        showgrid=False,
        title=None,
    )
    fig.update_yaxes(range=[0, 1.15], visible=False)
    fig = _style(fig, 120)
    fig.update_layout(margin={"l": 10, "r": 10, "t": 5, "b": 5})
    return fig


def attribution_bar(
    contributions: pd.DataFrame,
    residual: float | None = None,
    fidelity: float | None = None,
    top_k: int = 6,
    title: str | None = None,
) -> go.Figure:
    """The concepts that moved one image's logit most, towards synthetic and towards real.

    ``contributions``: columns ``concept`` and ``contribution`` (logit units; > 0 pushes
    towards synthetic), optionally ``label`` (text shown instead of the id). The top ``top_k``
    of each sign are drawn, plus the unexplained ``residual`` as a grey bar; ``fidelity`` (how
    much of the logit the concepts explain, 0..1) goes into the title.
    """
    if contributions is None or contributions.empty:
        return empty_figure("no concept attribution for this detector")
    df = contributions.copy()
    if "label" not in df:
        df["label"] = df["concept"].map(concept_label)
    # bars that would read +0.00 / -0.00 say nothing: leave them out
    floor = max(0.005, 0.01 * float(df["contribution"].abs().max() or 0.0))
    pos = df[df["contribution"] > floor].nlargest(top_k, "contribution")
    neg = df[df["contribution"] < -floor].nsmallest(top_k, "contribution")
    shown = pd.concat([neg.iloc[::-1], pos.iloc[::-1]]).sort_values("contribution")
    # long "pole ↔ pole" labels take two lines, so the bars keep their width
    labels = [
        str(x).replace(" ↔ ", " ↔<br>") if len(str(x)) > 28 else str(x) for x in shown["label"]
    ]
    values = shown["contribution"].astype(float).tolist()
    colours = [SYNTHETIC_COLOUR if v > 0 else REAL_COLOUR for v in values]
    leans = (
        [f"this image leans towards: {x}" for x in shown["leans"]]
        if "leans" in shown
        else [""] * len(labels)
    )
    if residual is not None and np.isfinite(residual):
        labels = ["unexplained (residual)", *labels]
        values = [float(residual), *values]
        colours = [NEUTRAL_COLOUR, *colours]
        leans = ["the part of the logit concepts do not explain", *leans]
    fig = go.Figure(
        go.Bar(
            x=values,
            y=labels,
            orientation="h",
            marker_color=colours,
            customdata=leans,
            hovertemplate="%{y}: %{x:+.3f} logit<br>%{customdata}<extra></extra>",
            text=[f"{v:+.2f}" for v in values],
            textposition="outside",
            cliponaxis=False,
        )
    )
    reach = max((abs(v) for v in values), default=1.0) or 1.0
    fig.update_xaxes(range=[-1.35 * reach, 1.35 * reach])  # room for the value labels
    heading = title or "Concepts behind the verdict"
    x_title = "← real · contribution to the logit · synthetic →"
    return _rows_chart(fig, heading, x_title, len(labels), (40, 220, 90), fidelity, zero_line=True)


# -- global concept views --------------------------------------------------------------------


def concept_weights_bar(
    weights: pd.DataFrame, top_k: int = 20, fidelity: float | None = None
) -> go.Figure:
    """Global concept importances: columns ``concept``, ``weight`` (signed), optional ``label``.

    The ``top_k`` largest by absolute weight are drawn, orange towards synthetic.
    """
    if weights is None or weights.empty:
        return empty_figure("this detector has no concept weights")
    df = weights.copy()
    if "label" not in df:
        df["label"] = df["concept"].map(concept_label)
    df = df.reindex(df["weight"].abs().sort_values(ascending=False).index).head(top_k)
    df = df.sort_values("weight")
    colours = [SYNTHETIC_COLOUR if w > 0 else REAL_COLOUR for w in df["weight"]]
    fig = go.Figure(
        go.Bar(
            x=df["weight"],
            y=df["label"],
            orientation="h",
            marker_color=colours,
            hovertemplate="%{y}: %{x:+.3f}<extra></extra>",
        )
    )
    title = f"Top {len(df)} concepts by global weight"
    x_title = "← real · weight · synthetic →"
    return _rows_chart(fig, title, x_title, len(df), (24, 260, 90), fidelity, zero_line=True)


def usage_by_class(
    usage: pd.DataFrame,
    top_k: int = 15,
    x_title: str = "mean contribution (logit)",
    title: str = "Concept usage per class",
) -> go.Figure:
    """How much each concept is used per class: columns ``concept``, ``class``, ``value``.

    Concepts are ranked by their total absolute usage; one bar per class (real blue,
    synthetic orange).
    """
    if usage is None or usage.empty:
        return empty_figure("no concept usage to show")
    key = "label" if "label" in usage else "concept"
    total = usage.assign(mag=usage["value"].abs()).groupby(key)["mag"].sum()
    order = total.sort_values(ascending=False).head(top_k).index
    df = usage[usage[key].isin(order)]
    fig = go.Figure()
    for cls in sorted(df["class"].unique()):
        part = df[df["class"] == cls].set_index(key).reindex(order[::-1])
        fig.add_trace(
            go.Bar(
                x=part["value"],
                y=part.index,
                name=str(cls),
                orientation="h",
                marker_color=REAL_COLOUR if cls == "real" else SYNTHETIC_COLOUR,
                hovertemplate=f"{cls}: " + "%{y} %{x:.3f}<extra></extra>",
            )
        )
    fig.update_layout(barmode="group")
    return _rows_chart(fig, title, x_title, len(order), (30, 260, 100))


def heatmap(
    matrix: pd.DataFrame,
    title: str,
    colorbar_title: str = "",
    *,
    zmid: float | None = None,
    zmin: float | None = None,
    zmax: float | None = None,
    fmt: str = ".2f",
    x_title: str | None = None,
    y_title: str | None = None,
    diverging: bool = True,
) -> go.Figure:
    """A labelled heatmap of a DataFrame (rows on y, columns on x), values printed in cells.

    Used for the concept x generator matrix (diverging, centred at ``zmid``) and the
    train x test transfer matrix (sequential, 0..1).
    """
    if matrix is None or matrix.empty:
        return empty_figure(f"{title}: nothing to show yet")
    values = matrix.to_numpy(dtype=float)
    colorscale = "RdBu_r" if diverging else "Blues"
    text = [[("" if not np.isfinite(v) else format(v, fmt)) for v in row] for row in values]
    show_text = values.size <= 400
    fig = go.Figure(
        go.Heatmap(
            z=values,
            x=[str(c) for c in matrix.columns],
            y=[str(i) for i in matrix.index],
            colorscale=colorscale,
            zmid=zmid,
            zmin=zmin,
            zmax=zmax,
            text=text if show_text else None,
            texttemplate="%{text}" if show_text else None,
            colorbar={"title": {"text": colorbar_title}},
            hovertemplate="%{y} × %{x}: %{z:" + fmt + "}<extra></extra>",
        )
    )
    fig.update_xaxes(title=x_title, side="bottom", tickangle=-30)
    fig.update_yaxes(title=y_title, autorange="reversed", automargin=True)
    height = max(280, 26 * len(matrix.index) + 140)
    return _style(fig, min(height, 900), title)


def score_distribution(
    values: Sequence[float],
    groups: Sequence[str],
    title: str,
    x_title: str = "score",
    *,
    order: Sequence[str] | None = None,
    threshold: float | None = None,
) -> go.Figure:
    """One horizontal box (with its points) per group: concept scores or P(synthetic).

    ``groups`` names the group of each value (``real`` is drawn in blue, others orange).
    """
    values = np.asarray(values, dtype=float)
    groups = np.asarray([str(g) for g in groups])
    if values.size == 0:
        return empty_figure(f"{title}: no images to show")
    names = (
        list(order) if order is not None else sorted(set(groups), key=lambda g: (g != "real", g))
    )
    fig = go.Figure()
    for name in names:
        mask = groups == name
        if not mask.any():
            continue
        fig.add_trace(
            go.Box(
                x=values[mask],
                name=f"{name} ({int(mask.sum())})",
                boxpoints="outliers",
                orientation="h",
                marker_color=REAL_COLOUR if name == "real" else SYNTHETIC_COLOUR,
                hovertemplate="%{x:.3f}<extra>" + name + "</extra>",
            )
        )
    if threshold is not None:
        fig.add_vline(x=threshold, line={"dash": "dash", "color": "#4a5361", "width": 1})
    fig.update_layout(showlegend=False)
    fig.update_xaxes(title=x_title)
    fig.update_yaxes(autorange="reversed", automargin=True)
    return _style(fig, max(220, 46 * len(names) + 100), title)


def profile_compare(profile: pd.DataFrame, name_a: str, name_b: str, top_k: int = 12) -> go.Figure:
    """Two groups' mean concept scores, for the concepts where they differ most (dumbbells).

    ``profile``: columns ``concept`` (or ``label``), ``a``, ``b`` (mean score of each group).
    """
    if profile is None or profile.empty:
        return empty_figure("no concept profiles to compare")
    key = "label" if "label" in profile else "concept"
    df = profile.assign(diff=profile["b"] - profile["a"])
    df = df.reindex(df["diff"].abs().sort_values(ascending=False).index).head(top_k)
    df = df.sort_values("diff")
    fig = go.Figure()
    for _, row in df.iterrows():
        fig.add_trace(
            go.Scatter(
                x=[row["a"], row["b"]],
                y=[row[key], row[key]],
                mode="lines",
                line={"color": "#c5cbd3", "width": 3},
                showlegend=False,
                hoverinfo="skip",
            )
        )
    for col, name, colour in (("a", name_a, REAL_COLOUR), ("b", name_b, SYNTHETIC_COLOUR)):
        fig.add_trace(
            go.Scatter(
                x=df[col],
                y=df[key],
                mode="markers",
                name=name,
                marker={"size": 11, "color": colour},
                hovertemplate=name + ": %{y} %{x:.3f}<extra></extra>",
            )
        )
    title = "Where their concept profiles differ most"
    return _rows_chart(fig, title, "mean concept score (cosine)", len(df), (30, 260, 110))


# -- detection quality -----------------------------------------------------------------------


def ap_bar(table: pd.DataFrame, title: str = "AP per generator (95% CI)") -> go.Figure:
    """Per-generator AP with bootstrap CIs and the mAP as a dashed line.

    ``table`` is ``detector.metrics.per_generator_ap``'s output (columns metric, generator,
    value, ci_low, ci_high, n_real, n_fake): ``ap`` rows are bars, the ``mAP`` row the line.
    """
    if table is None or table.empty:
        return empty_figure("no per-generator AP: the evaluated split needs reals and fakes")
    ap = table[table["metric"] == "ap"].sort_values("value")
    if ap.empty:
        return empty_figure("no generator has both fakes and reals in this split")
    lo = (ap["value"] - ap["ci_low"]).clip(lower=0).fillna(0)
    hi = (ap["ci_high"] - ap["value"]).clip(lower=0).fillna(0)
    fig = go.Figure(
        go.Bar(
            x=ap["value"],
            y=ap["generator"].astype(str),
            orientation="h",
            marker_color=SYNTHETIC_COLOUR,
            error_x={"type": "data", "array": hi, "arrayminus": lo, "color": "#4a5361"},
            customdata=np.stack([ap["ci_low"], ap["ci_high"], ap["n_fake"]], axis=1),
            hovertemplate="%{y}: AP %{x:.3f} [%{customdata[0]:.3f}, %{customdata[1]:.3f}]"
            " · %{customdata[2]} fakes<extra></extra>",
        )
    )
    m = table[table["metric"] == "mAP"]
    if not m.empty and np.isfinite(float(m["value"].iloc[0])):
        value = float(m["value"].iloc[0])
        _marked_line(
            fig,
            value,
            f"mAP {value:.3f}",
            {"dash": "dash", "color": "#1d2433", "width": 1.5},
            xanchor="right",
            yanchor="bottom",
            font={"size": 12},
        )
    fig.update_xaxes(range=[0, 1.02])
    return _rows_chart(fig, title, "average precision", len(ap), (40, 240, 110))


def _generator_subsets(y: np.ndarray, generator: np.ndarray):
    gens = sorted({str(g) for g, t in zip(generator, y, strict=True) if t == 1})
    for g in gens:
        mask = (y == 0) | ((y == 1) & (generator == g))
        yield g, mask


def _curve_inputs(y, scores, generator):
    y = np.asarray(y).astype(int)
    scores = np.asarray(scores, dtype=float)
    generator = np.asarray(["" if g is None else str(g) for g in generator], dtype=object)
    return y, scores, generator


def _generator_lines(fig: go.Figure, data, curve, hover: str, **line) -> None:
    """One line per generator: ``curve(labels, scores)`` gives the (x, y) points of its fakes
    against all reals; ``hover`` follows the generator's name; ``line``: more line style."""
    y, scores, generator = data
    for i, (g, mask) in enumerate(_generator_subsets(y, generator)):
        xs, ys = curve(y[mask], scores[mask])
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                mode="lines",
                name=g,
                line={**line, "width": 2, "color": SEQUENCE[i % len(SEQUENCE)]},
                hovertemplate=g + hover,
            )
        )


def pr_curves(y, scores, generator) -> go.Figure:
    """Precision-recall curve of each generator's fakes against all reals (shared pairing)."""
    from sklearn.metrics import precision_recall_curve  # lazy: sklearn only for PR and ROC

    y, scores, generator = _curve_inputs(y, scores, generator)
    if not ((y == 0).any() and (y == 1).any()):
        return empty_figure("PR curves need both real and synthetic images")
    fig = go.Figure()

    def recall_precision(truth, score):
        precision, recall, _ = precision_recall_curve(truth, score)
        return recall, precision

    _generator_lines(
        fig,
        (y, scores, generator),
        recall_precision,
        ": recall %{x:.2f}, precision %{y:.2f}<extra></extra>",
        shape="hv",
    )
    fig.update_xaxes(title="recall", range=[0, 1.01])
    fig.update_yaxes(title="precision", range=[0, 1.02])
    return _style(fig, 340, "Precision-recall per generator")


def roc_curves(y, scores, generator) -> go.Figure:
    """ROC curve of each generator's fakes against all reals, with the chance diagonal."""
    from sklearn.metrics import roc_curve  # lazy: sklearn only for PR and ROC

    y, scores, generator = _curve_inputs(y, scores, generator)
    if not ((y == 0).any() and (y == 1).any()):
        return empty_figure("ROC curves need both real and synthetic images")
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=[0, 1],
            y=[0, 1],
            mode="lines",
            line={"dash": "dot", "color": "#b0b6bf"},
            showlegend=False,
            hoverinfo="skip",
        )
    )
    _generator_lines(
        fig,
        (y, scores, generator),
        lambda truth, score: roc_curve(truth, score)[:2],
        ": FPR %{x:.2f}, TPR %{y:.2f}<extra></extra>",
    )
    fig.update_xaxes(title="false-positive rate (reals called synthetic)", range=[0, 1])
    fig.update_yaxes(title="true-positive rate", range=[0, 1.02])
    return _style(fig, 340, "ROC per generator")


def score_overlap(
    scores_a: Sequence[float],
    scores_b: Sequence[float],
    name_a: str,
    name_b: str,
    threshold: float | None = None,
    bins: int = 30,
) -> go.Figure:
    """Overlaid histograms of P(synthetic) for two groups, with the decision threshold.

    Where the two overlap is where the detector confuses them.
    """
    a = np.asarray(scores_a, dtype=float)
    b = np.asarray(scores_b, dtype=float)
    if a.size == 0 and b.size == 0:
        return empty_figure("no scored images in either group")
    fig = go.Figure()
    edges = {"start": 0.0, "end": 1.0, "size": 1.0 / bins}
    for values, name, colour in ((a, name_a, REAL_COLOUR), (b, name_b, SYNTHETIC_COLOUR)):
        fig.add_trace(
            go.Histogram(
                x=values,
                name=f"{name} ({values.size})",
                xbins=edges,
                opacity=0.6,
                marker_color=colour,
                histnorm="percent",
                hovertemplate=name + ": %{y:.1f}% of images<extra></extra>",
            )
        )
    if threshold is not None:
        _marked_line(
            fig,
            threshold,
            f"threshold {threshold:.2f}",
            {"dash": "dash", "color": "#1d2433", "width": 1.5},
            xanchor="left",
            yanchor="top",  # inside the plot, clear of the legend above it
            xshift=4,
            bgcolor="rgba(255,255,255,0.8)",
            font={"size": 12},
        )
    fig.update_layout(barmode="overlay")
    fig.update_xaxes(title="P(synthetic)", range=[0, 1])
    fig.update_yaxes(title="% of the group")
    return _style(fig, 300, "Score distributions: overlap = confusion")


def training_curves(history: Sequence[dict] | pd.DataFrame) -> go.Figure:
    """Training and validation loss per epoch (and validation AP on a second axis if present).

    ``history``: one record per epoch with ``epoch``, ``train_loss`` and optional
    ``val_loss``, ``val_ap``.
    """
    df = pd.DataFrame(history)
    if df.empty or "epoch" not in df:
        return empty_figure("training curves appear here after the first epoch")
    fig = go.Figure()
    series = (
        ("train_loss", "train loss", REAL_COLOUR),
        ("val_loss", "validation loss", SYNTHETIC_COLOUR),
    )
    for col, name, colour in series:
        if col in df and df[col].notna().any():
            fig.add_trace(
                go.Scatter(
                    x=df["epoch"],
                    y=df[col],
                    name=name,
                    mode="lines+markers",
                    line={"color": colour},
                )
            )
    if "val_ap" in df and df["val_ap"].notna().any():
        fig.add_trace(
            go.Scatter(
                x=df["epoch"],
                y=df["val_ap"],
                name="validation AP",
                mode="lines",
                line={"color": "#3a9d5d", "dash": "dot"},
                yaxis="y2",
            )
        )
        fig.update_layout(
            yaxis2={
                "title": "validation AP",
                "overlaying": "y",
                "side": "right",
                "range": [0, 1.02],
                "showgrid": False,
            }
        )
    best = _best_epoch(df)
    if best is not None:
        late = best > (df["epoch"].min() + df["epoch"].max()) / 2  # label inside the plot
        _marked_line(
            fig,
            best,
            f"best epoch {best}",
            {"dash": "dot", "color": "#4a5361", "width": 1.2},
            xanchor="right" if late else "left",
            yanchor="top",
            xshift=-4 if late else 4,
            font={"size": 12, "color": "#4a5361"},
        )
    fig.update_xaxes(title="epoch", rangemode="tozero" if len(df) > 1 else None)
    fig.update_yaxes(title="loss")
    return _style(fig, 300, "Training")


def _best_epoch(df: pd.DataFrame) -> int | None:
    """The epoch whose weights are kept: the last record's ``best_epoch`` (with validation)."""
    if "best_epoch" not in df or "val_loss" not in df or not df["val_loss"].notna().any():
        return None
    best = df["best_epoch"].dropna()
    return int(best.iloc[-1]) if len(best) and best.iloc[-1] else None


# -- robustness and the bias audit -------------------------------------------------------------

FAMILY_TITLES = {
    "jpeg": "JPEG re-compression",
    "resize": "Resizing",
    "blur": "Gaussian blur",
    "crop": "Centre crop",
    "noise": "Gaussian noise",
}
MAP_COLOUR = "#1d2433"
REVERSED_FAMILIES = ("jpeg", "crop")  # a lower value is a stronger perturbation


def robustness_lines(
    curves: pd.DataFrame,
    family: str,
    *,
    unit: str | None = None,
    identity: float | None = None,
    height: int = 300,
) -> go.Figure:
    """AP versus perturbation strength for one family: one line per generator, mAP dashed.

    ``curves`` is ``detector.perturb.robustness_curves(report.table)`` (family, strength,
    generator, ap, perturbation; generator ``mAP`` is the mean over generators). ``unit``
    titles the x axis, ``identity`` (the strength of the unperturbed images) gets a dotted
    line. The JPEG and crop axes run from 100 / 1 down, so on every figure the perturbation
    grows to the right (for resize, away from 1 on both sides).
    """
    part = curves[curves["family"] == family] if len(curves) else curves
    title = FAMILY_TITLES.get(family, family)
    if part is None or part.empty:
        return empty_figure(f"no {family} perturbation in this sweep", height)
    fig = go.Figure()
    generators = [g for g in dict.fromkeys(part["generator"]) if g != "mAP"]
    for i, generator in enumerate(sorted(generators, key=str)):
        line = part[part["generator"] == generator].sort_values("strength")
        fig.add_trace(
            go.Scatter(
                x=line["strength"],
                y=line["ap"],
                name=str(generator),
                mode="lines+markers",
                line={"color": SEQUENCE[(i + 1) % len(SEQUENCE)], "width": 2},
                marker={"size": 7},
                customdata=line["perturbation"],
                hovertemplate=f"{generator}: AP %{{y:.3f}} · %{{customdata}}<extra></extra>",
            )
        )
    mean = part[part["generator"] == "mAP"].sort_values("strength")
    if len(mean):
        fig.add_trace(
            go.Scatter(
                x=mean["strength"],
                y=mean["ap"],
                name="mAP",
                mode="lines+markers",
                line={"color": MAP_COLOUR, "width": 3.5, "dash": "dash"},
                marker={"size": 8, "symbol": "diamond"},
                customdata=mean["perturbation"],
                hovertemplate="mAP %{y:.3f} · %{customdata}<extra></extra>",
            )
        )
    if identity is not None:
        _marked_line(
            fig,
            identity,
            "unperturbed",
            {"dash": "dot", "color": NEUTRAL_COLOUR, "width": 1},
            y=0.0,
            xanchor="left",
            yanchor="bottom",
            xshift=4,
            font={"size": 11, "color": "#5b6472"},
        )
    # an explicit range: autorange would make room for the "unperturbed" label as data
    lo, hi = float(part["strength"].min()), float(part["strength"].max())
    pad = 0.06 * (hi - lo) if hi > lo else 0.5
    span = [lo - pad, hi + pad]
    reverse = family in REVERSED_FAMILIES
    fig.update_xaxes(title=unit or family, range=span[::-1] if reverse else span, nticks=6)
    fig.update_yaxes(title="AP", range=[0, 1.02])
    fig = _style(fig, height, title)
    # generators are many and their names long: a legend column on the right, not rows on top
    fig.update_layout(
        height=height,
        margin={"t": 40},
        legend={"orientation": "v", "x": 1.01, "xanchor": "left", "y": 1, "yanchor": "top"},
    )
    return fig


def restyle(fig: go.Figure, height: int = 320, title_width: int = 56) -> go.Figure:
    """A figure made by the library (e.g. ``detector.audit.audit_figure``) in the dashboard's
    style: its title kept (wrapped at ``title_width`` characters), real and synthetic traces
    in the app's colours."""
    colours = {"real": REAL_COLOUR, "synthetic": SYNTHETIC_COLOUR}
    for trace in fig.data:
        colour = colours.get(str(getattr(trace, "name", "")))
        if colour is not None and hasattr(trace, "marker"):
            trace.marker.color = colour
    for axis in (fig.layout.xaxis, fig.layout.yaxis):
        if axis.title and axis.title.text:
            axis.title.text = axis.title.text.replace("_", " ")  # file_size -> file size
    text = fig.layout.title.text if fig.layout.title else None
    lines = textwrap.wrap(text, title_width) if text else []
    fig = _style(fig, height, "<br>".join(lines) or None)
    if len(lines) > 1:
        # plotly anchors a multi-line title too high by about a line: pad it down, make room
        extra = 22 * (len(lines) - 1)
        fig.update_layout(
            height=fig.layout.height + extra,
            margin={"t": fig.layout.margin.t + extra},
            title_pad_t=27,
        )
    return fig
