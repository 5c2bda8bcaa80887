"""Assessing the cues in the dashboard: chart builders as plain functions, and the Concepts and
Generators pages under AppTest in demo mode (the released comparison, the stability panel,
the survival section)."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from test_app import app_env, assert_clean, demo_home, new_app  # noqa: F401 (fixtures)

from ui import cues_charts

CONCEPTS_PAGE = "pages/concepts.py"
GENERATORS_PAGE = "pages/generators.py"


# -- charts ----------------------------------------------------------------------------------


def _table():
    return pd.DataFrame(
        {
            "concept": ["a_b", "c", "d"],
            "importance_x": [1.0, 0.2, 0.5],
            "weight_x": [3.0, -0.6, 1.5],
            "importance_y": [0.1, 1.0, 0.5],
            "weight_y": [-0.2, 2.0, 1.0],
            "spread": [0.45, 0.4, 0.0],
        }
    )


def test_shift_heatmap_carries_signed_importance():
    fig = cues_charts.shift_heatmap(_table(), ["x", "y"], top_n=2)
    z = np.asarray(fig.data[0].z)
    assert z.shape == (2, 2)  # two rows by spread, two domains
    np.testing.assert_allclose(z, [[1.0, -0.1], [-0.2, 1.0]])
    assert fig.data[0].y[0].startswith("a b")


def test_survival_scatter_has_one_point_per_generator():
    table = pd.DataFrame(
        {
            "generator": ["g1", "g2"],
            "ap": [0.9, 0.4],
            "n_real": [10, 10],
            "n_fake": [5, 6],
            "diagnostic_agreement": [0.8, np.nan],
            "selection_survival": [1.0, 0.2],
        }
    )
    fig = cues_charts.survival_scatter(table, 10)
    assert list(fig.data[0].x) == [0.9, 0.4] and list(fig.data[0].y) == [1.0, 0.2]
    assert list(fig.data[0].text) == ["g1", "g2"]
    assert "top-10" in fig.layout.yaxis.title.text


def test_correlation_and_domain_bar():
    corr = pd.DataFrame([[1.0, 0.3], [0.3, 1.0]], index=["x", "y"], columns=["x", "y"])
    assert np.asarray(cues_charts.correlation_heatmap(corr).data[0].z)[0, 1] == 0.3
    top = pd.DataFrame(
        {
            "concept": ["p", "q"],
            "importance": [1.0, 0.5],
            "weight": [2.0, -1.0],
            "positive": ["P+", "Q+"],
            "negative": ["P-", "Q-"],
        }
    )
    bar = cues_charts.domain_importance_bar(top, "x")
    assert list(bar.data[0].x) == [-0.5, 1.0]  # drawn bottom-up


# -- pages -----------------------------------------------------------------------------------


def _texts(at) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    parts += [s.value for s in at.subheader] + [i.value for i in at.info]
    parts += [w.value for w in at.warning]
    return "\n".join(parts)


def test_released_comparison_renders_in_demo_mode(clip_cues_dir, monkeypatch):
    monkeypatch.setenv("CUE_LENS_RELEASED_DIR", str(clip_cues_dir))
    at = new_app().run()
    at.switch_page(CONCEPTS_PAGE).run()
    assert_clean(at, "concepts")
    text = _texts(at)
    assert "concept shift between domains" in text
    assert "Real learned weights" in text and "Not the demo" in text
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Concepts"] == "168" and metrics["Domains"] == "4"
    tables = [d.value for d in at.dataframe if "synthclic poles" in d.value.columns]
    assert tables and len(tables[0]) == 10
    charts = " ".join(c.proto.spec for c in at.get("plotly_chart"))
    assert "whose role shifts most" in charts and "Rank correlation" in charts


def test_released_comparison_says_when_the_models_are_missing(monkeypatch, tmp_path):
    monkeypatch.delenv("CUE_LENS_RELEASED_DIR", raising=False)
    monkeypatch.setenv("CUE_LENS_CACHE", str(tmp_path / "empty-cache"))
    at = new_app().run()
    at.switch_page(CONCEPTS_PAGE).run()
    assert_clean(at, "concepts")
    assert any("not available on this machine" in w.value for w in at.warning)
    assert any("Downloads are switched off" in c.value for c in at.caption)


@pytest.fixture
def own_home(demo_home, tmp_path, monkeypatch):  # noqa: F811 (the imported fixture)
    """A copy of the demo home, so what these tests store stays out of the shared demo."""
    home = tmp_path / "home"
    shutil.copytree(demo_home, home)
    monkeypatch.setenv("CUE_LENS_HOME", str(home))
    return home


def test_stability_panel_shows_summary_and_badges(own_home):
    from concepts.stability import run_stability
    from detector.store import Workspace

    with Workspace(own_home / "demo", create=False) as ws:
        result = run_stability(ws, "linear", seeds=2, top=5)
    at = new_app().run()
    at.switch_page(CONCEPTS_PAGE).run()
    assert_clean(at, "concepts")
    text = _texts(at)
    assert result["summary"] in text
    metrics = {m.label: m.value for m in at.metric}
    jac = result["groups"][0]["importance"]["top_k_jaccard"]["mean"]
    assert metrics["Top-5 overlap"] == f"{jac:.2f}"
    table = next(d.value for d in at.dataframe if "stability" in d.value.columns)
    expected = [
        f"same sign in {c['same_sign']} of 2 fits, top-5 in {c['in_top_k']}"
        for c in result["groups"][0]["importance"]["concepts"][: len(table)]
    ]
    assert table["stability"].tolist() == expected
    assert (table["stability"].str.startswith("same sign in 1 of 2")).any()  # not all stable


def test_stability_panel_invites_a_measurement(own_home):
    at = new_app().run()
    at.switch_page(CONCEPTS_PAGE).run()
    assert_clean(at, "concepts")
    assert "Not measured yet for linear heads" in _texts(at)
    assert at.button(key="stability_go").label == "Measure"


def test_generators_page_shows_survival(own_home):
    at = new_app().run()
    at.switch_page(GENERATORS_PAGE).run()
    assert_clean(at, "generators")
    charts = " ".join(c.proto.spec for c in at.get("plotly_chart"))
    assert "Detection against survival" in charts
    table = next(d.value for d in at.dataframe if "survival" in d.value.columns)
    assert set(table["generator"]) == {"checkerboard-gan", "tiling-synth", "smooth-diffusion"}
    assert table["survival"].between(0, 1).all()
    compare = next(d.value for d in at.dataframe if "source" in d.value.columns)
    assert len(compare) == 10
    assert set(compare.filter(like="survives?").stack()) <= {"survives", "silent"}


def test_stability_panel_lists_the_beta_groups(own_home):
    import concepts.bottleneck  # noqa: F401  (lets train_head build concept heads)
    from concepts.stability import run_stability
    from detector.store import Workspace
    from detector.train import train_head

    with Workspace(own_home / "demo", create=False) as ws:
        train_head(ws, "concept", out="cues_concept", params={"max_epochs": 3})
        result = run_stability(
            ws, "concept", seeds=2, betas=[1e-4, 1e-2], top=5, params={"max_epochs": 3}
        )
    at = new_app().run()
    at.sidebar.selectbox(key="cl_head_select").set_value("workspace:cues_concept").run()
    at.switch_page(CONCEPTS_PAGE).run()
    assert_clean(at, "concepts")
    assert result["summary"] in _texts(at)
    groups = next(d.value for d in at.dataframe if "group" in d.value.columns)
    assert groups["group"].tolist() == [
        "seeds at beta 0.0001",
        "seeds at beta 0.01",
        "betas at seed 0",
    ]
    expected = [g["importance"]["top_k_jaccard"]["mean"] for g in result["groups"]]
    assert groups["top-5 overlap"].tolist() == pytest.approx(expected)
