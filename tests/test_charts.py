"""The dashboard's chart builders: plain functions from numbers to Plotly figures."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from ui import charts


def annotations(fig: go.Figure) -> list[str]:
    return [a.text for a in fig.layout.annotations]


def test_empty_figure_says_why():
    fig = charts.empty_figure("nothing here yet")
    assert isinstance(fig, go.Figure)
    assert annotations(fig) == ["nothing here yet"]
    assert not fig.data


def test_concept_label_reads_like_text():
    assert charts.concept_label("veiling_glare") == "veiling glare"


def test_verdict_strip_draws_bands_threshold_and_the_probability():
    fig = charts.verdict_strip(0.91, low=0.3, high=0.8, threshold=0.55)
    shapes = [s for s in fig.layout.shapes if s.type == "rect"]
    assert [(s.x0, s.x1) for s in shapes] == [(0.0, 0.3), (0.3, 0.8), (0.8, 1)]
    assert any(s.type == "line" and s.x0 == 0.55 for s in fig.layout.shapes)
    marker = fig.data[0]
    assert list(marker.x) == [0.91] and marker.marker.color == charts.SYNTHETIC_COLOUR
    assert set(annotations(fig)) >= {"likely real", "inconclusive", "likely synthetic"}
    assert list(fig.layout.xaxis.tickvals) == [0.0, 0.3, 0.55, 0.8, 1.0]


@pytest.mark.parametrize(
    ("p", "colour"), [(0.1, charts.REAL_COLOUR), (0.5, "#666"), (0.95, charts.SYNTHETIC_COLOUR)]
)
def test_verdict_strip_marker_colour_follows_the_band(p, colour):
    assert charts.verdict_strip(p, 0.3, 0.8, 0.5).data[0].marker.color == colour


def test_attribution_bar_keeps_top_k_each_way_plus_residual_and_fidelity():
    table = pd.DataFrame(
        {
            "concept": [f"c_{i}" for i in range(10)],
            "contribution": [0.9, 0.5, 0.2, 0.1, 0.05, -0.8, -0.4, -0.3, -0.01, 0.0],
        }
    )
    fig = charts.attribution_bar(table, residual=-0.25, fidelity=0.83, top_k=3)
    bar = fig.data[0]
    labels, values = list(bar.y), list(bar.x)
    assert labels[0] == "unexplained (residual)" and values[0] == -0.25
    shown = dict(zip(labels[1:], values[1:], strict=True))
    assert set(shown) == {"c 0", "c 1", "c 2", "c 5", "c 6", "c 7"}
    assert list(values[1:]) == sorted(values[1:])
    assert bar.marker.color[0] == charts.NEUTRAL_COLOUR
    assert all(
        c == (charts.SYNTHETIC_COLOUR if v > 0 else charts.REAL_COLOUR)
        for c, v in zip(bar.marker.color[1:], values[1:], strict=True)
    )
    assert "fidelity 83.0%" in fig.layout.title.text


def test_attribution_bar_without_data_explains():
    fig = charts.attribution_bar(pd.DataFrame(columns=["concept", "contribution"]))
    assert "no concept attribution" in annotations(fig)[0]


def test_concept_weights_bar_ranks_by_absolute_weight():
    weights = pd.DataFrame({"concept": list("abcde"), "weight": [0.1, -0.9, 0.5, 0.05, -0.2]})
    fig = charts.concept_weights_bar(weights, top_k=3, fidelity=0.5)
    assert set(fig.data[0].y) == {"b", "c", "e"}
    assert list(fig.data[0].x) == sorted(fig.data[0].x)
    assert "fidelity 50.0%" in fig.layout.title.text


def test_usage_by_class_one_trace_per_class():
    usage = pd.DataFrame(
        {
            "concept": ["a", "a", "b", "b", "c", "c"],
            "class": ["real", "synthetic"] * 3,
            "value": [0.1, 0.3, -0.2, 0.05, 0.01, 0.0],
        }
    )
    fig = charts.usage_by_class(usage, top_k=2)
    assert [t.name for t in fig.data] == ["real", "synthetic"]
    assert set(fig.data[0].y) == {"a", "b"}  # c has the least usage
    assert fig.data[0].marker.color == charts.REAL_COLOUR


def test_heatmap_keeps_labels_and_values():
    matrix = pd.DataFrame(
        [[0.9, 0.4], [0.3, 0.8]], index=["train A", "train B"], columns=["A", "B"]
    )
    fig = charts.heatmap(matrix, "transfer", "mAP", zmin=0, zmax=1, diverging=False)
    hm = fig.data[0]
    assert list(hm.x) == ["A", "B"] and list(hm.y) == ["train A", "train B"]
    np.testing.assert_allclose(np.asarray(hm.z, dtype=float), matrix.to_numpy())
    assert hm.text[0][0] == "0.90"
    assert "nothing to show" in annotations(charts.heatmap(pd.DataFrame(), "t"))[0]


def test_score_distribution_one_box_per_group_real_first():
    values = [0.1, 0.2, 0.3, 0.9, 0.8, 0.4]
    groups = ["gan", "real", "real", "gan", "diff", "diff"]
    fig = charts.score_distribution(values, groups, "scores", threshold=0.5)
    assert [t.name for t in fig.data] == ["real (2)", "diff (2)", "gan (2)"]
    assert fig.data[0].marker.color == charts.REAL_COLOUR
    assert "no images" in annotations(charts.score_distribution([], [], "x"))[0]


def test_profile_compare_shows_the_largest_differences():
    profile = pd.DataFrame(
        {"concept": list("abcd"), "a": [0.1, 0.2, 0.3, 0.4], "b": [0.1, 0.5, 0.29, 0.0]}
    )
    fig = charts.profile_compare(profile, "real", "gan", top_k=2)
    markers = [t for t in fig.data if t.mode == "markers"]
    assert [t.name for t in markers] == ["real", "gan"]
    assert set(markers[0].y) == {"b", "d"}


def ap_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "metric": ["ap", "ap", "mAP"],
            "generator": ["gan", "diffusion", None],
            "value": [0.95, 0.7, 0.825],
            "ci_low": [0.9, 0.6, 0.76],
            "ci_high": [0.99, 0.8, 0.88],
            "n_real": [10, 10, 10],
            "n_fake": [5, 6, 11],
            "note": [None, None, None],
        }
    )


def test_ap_bar_has_ci_error_bars_and_the_map_line():
    fig = charts.ap_bar(ap_table())
    bar = fig.data[0]
    assert list(bar.y) == ["diffusion", "gan"]  # ascending AP
    np.testing.assert_allclose(bar.error_x.array, [0.1, 0.04])
    np.testing.assert_allclose(bar.error_x.arrayminus, [0.1, 0.05])
    assert any("mAP 0.825" in t for t in annotations(fig))
    assert any(s.type == "line" and s.x0 == 0.825 for s in fig.layout.shapes)


def test_ap_bar_empty_explains():
    assert "no per-generator AP" in annotations(charts.ap_bar(pd.DataFrame()))[0]


def scored_set():
    rng = np.random.default_rng(0)
    y = np.array([0] * 20 + [1] * 20)
    gens = np.array([None] * 20 + ["gan"] * 10 + ["diff"] * 10, dtype=object)
    scores = rng.normal(size=40) + 2 * y
    return y, scores, gens


def test_pr_and_roc_curves_one_trace_per_generator():
    y, scores, gens = scored_set()
    pr = charts.pr_curves(y, scores, gens)
    roc = charts.roc_curves(y, scores, gens)
    assert [t.name for t in pr.data] == ["diff", "gan"]
    assert [t.name for t in roc.data if t.showlegend is not False] == ["diff", "gan"]
    for t in pr.data:
        assert min(t.y) >= 0 and max(t.y) <= 1
    one_class = charts.pr_curves(np.zeros(4), np.arange(4), [None] * 4)
    assert "need both" in annotations(one_class)[0]


def test_score_overlap_two_histograms_and_the_threshold():
    fig = charts.score_overlap([0.1, 0.2], [0.8, 0.9, 0.7], "real", "gan", threshold=0.6)
    assert [t.name for t in fig.data] == ["real (2)", "gan (3)"]
    assert fig.layout.barmode == "overlay"
    assert any("threshold 0.60" in t for t in annotations(fig))


def test_training_curves_losses_and_validation_ap():
    history = [
        {"epoch": 1, "train_loss": 0.7, "val_loss": 0.69, "val_ap": 0.6},
        {"epoch": 2, "train_loss": 0.5, "val_loss": 0.55, "val_ap": 0.8},
    ]
    fig = charts.training_curves(history)
    assert [t.name for t in fig.data] == ["train loss", "validation loss", "validation AP"]
    assert fig.data[2].yaxis == "y2"
    assert "after the first epoch" in annotations(charts.training_curves([]))[0]


def test_training_curves_mark_the_best_epoch_only_with_validation():
    history = [
        {"epoch": e, "train_loss": 0.7 - 0.05 * e, "val_loss": v, "best_epoch": b}
        for e, v, b in ((1, 0.6, 1), (2, 0.5, 2), (3, 0.55, 2))
    ]
    fig = charts.training_curves(history)
    lines = [s for s in fig.layout.shapes if s.type == "line"]
    assert len(lines) == 1 and lines[0].x0 == 2
    assert "best epoch 2" in annotations(fig)
    no_val = [{"epoch": 1, "train_loss": 0.7, "val_loss": None, "best_epoch": 1}]
    assert not charts.training_curves(no_val).layout.shapes


def robustness_table() -> pd.DataFrame:
    rows = []
    for name, family, strength, ap in (
        ("none", "none", np.nan, {"gan": 0.95, "sd": 0.9}),
        ("jpeg:75", "jpeg", 75.0, {"gan": 0.8, "sd": 0.85}),
        ("jpeg:30", "jpeg", 30.0, {"gan": 0.6, "sd": 0.7}),
        ("blur:1", "blur", 1.0, {"gan": 0.7, "sd": 0.88}),
        ("jpeg:75+resize:0.5", "jpeg+resize", np.nan, {"gan": 0.5, "sd": 0.6}),
    ):
        mean = float(np.mean(list(ap.values())))
        for gen, value in ap.items():
            rows.append(
                {
                    "perturbation": name,
                    "family": family,
                    "strength": strength,
                    "generator": gen,
                    "ap": value,
                    "n_fake": 10,
                    "n_real": 20,
                    "map": mean,
                    "flip_rate": 0.1,
                }
            )
    return pd.DataFrame(rows)


def test_robustness_lines_one_line_per_generator_and_the_map_dashed():
    from detector.perturb import FAMILIES, robustness_curves

    curves = robustness_curves(robustness_table())
    fig = charts.robustness_lines(curves, "jpeg", unit="quality", identity=100.0)
    assert [t.name for t in fig.data] == ["gan", "sd", "mAP"]
    assert list(fig.data[0].x) == [30.0, 75.0, 100.0]  # the baseline sits at quality 100
    assert list(fig.data[0].y) == [0.6, 0.8, 0.95]
    assert fig.data[2].line.dash == "dash"
    np.testing.assert_allclose(fig.data[2].y, [0.65, 0.825, 0.925])
    assert fig.layout.xaxis.range[0] > 100 > 30 > fig.layout.xaxis.range[1]  # reversed
    assert fig.layout.xaxis.title.text == "quality"
    assert fig.layout.title.text == "JPEG re-compression" and "unperturbed" in annotations(fig)
    blur = charts.robustness_lines(curves, "blur", identity=FAMILIES["blur"]["identity"])
    assert (
        list(blur.data[0].x) == [0.0, 1.0]
        and blur.layout.xaxis.range[0] < 0 < 1 < blur.layout.xaxis.range[1]
    )
    crop = charts.robustness_lines(
        curves.assign(family=curves["family"].replace("blur", "crop")), "crop"
    )
    assert crop.layout.xaxis.range[0] > crop.layout.xaxis.range[1]  # a smaller crop is stronger
    assert "no crop perturbation" in annotations(charts.robustness_lines(curves, "crop"))[0]


def test_restyle_keeps_the_title_and_uses_the_class_colours():
    fig = go.Figure([go.Box(y=[1, 2], name="real"), go.Box(y=[3, 4], name="synthetic")])
    fig.update_layout(title="Across all images: the image width by class: AUC 1.00")
    fig.update_yaxes(title="file_size")
    styled = charts.restyle(fig, height=300)
    assert styled.layout.title.text.endswith("AUC 1.00")
    assert styled.layout.yaxis.title.text == "file size"
    assert [t.marker.color for t in styled.data] == [charts.REAL_COLOUR, charts.SYNTHETIC_COLOUR]
    assert styled.layout.template.layout.paper_bgcolor is not None


def test_restyle_wraps_a_long_title_and_makes_room_for_it():
    long = "For generator checkerboard-gan (its images against all real images): the file size"
    fig = go.Figure([go.Box(y=[1, 2], name="real")])
    fig.update_layout(title=long)
    styled = charts.restyle(fig, height=300, title_width=40)
    assert styled.layout.title.text.count("<br>") == 2
    assert styled.layout.title.text.replace("<br>", " ") == long
    assert styled.layout.height == 300 + 2 * 22 and styled.layout.margin.t > 34
    assert styled.layout.title.pad.t == 27


def test_a_legend_of_seven_generators_gets_rows_of_its_own_above_the_plot():
    gens7 = ["BigGAN", "CycleGAN", "ProGAN", "StyleGAN", "stable-diffusion", "midjourney", "dalle"]
    rng = np.random.default_rng(0)
    n = 20
    y = np.r_[np.zeros(n), np.ones(n * len(gens7))].astype(int)
    gens = np.array([None] * n + [g for g in gens7 for _ in range(n)], dtype=object)
    scores = rng.normal(size=len(y)) + y
    rows = charts.legend_rows(gens7)
    assert rows >= 2 and charts.legend_rows(["a", "b"]) == 1
    for fig in (charts.pr_curves(y, scores, gens), charts.roc_curves(y, scores, gens)):
        # the top margin holds the title (34 px) and every legend row, so neither covers the other
        assert fig.layout.margin.t >= 34 + rows * charts.LEGEND_ROW_PX
        assert fig.layout.legend.yanchor == "bottom" and fig.layout.legend.y == 1.0


def test_pole_pair_label_names_both_poles():
    assert charts.pole_pair_label("warm_tones", ("warm golden tones", "cold bluish tones")) == (
        "warm golden tones ↔ cold bluish tones"
    )
    assert charts.pole_pair_label("warm_tones", None) == "warm tones"
    table = pd.DataFrame(
        {
            "concept": ["a", "b"],
            "contribution": [0.5, -0.3],
            "label": ["x ↔ y", "u ↔ v"],
            "leans": ["x", "v"],
        }
    )
    fig = charts.attribution_bar(table)
    assert list(fig.data[0].y) == ["u ↔ v", "x ↔ y"]
    assert "this image leans towards: v" in list(fig.data[0].customdata)
